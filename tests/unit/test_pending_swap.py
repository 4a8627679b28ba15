"""A model load nobody waits for any more (stuck past the swap timeout) is closed, whenever it
finishes: before or after it was abandoned."""

from __future__ import annotations

from edged.pipeline.messages import SWAP_TIMEOUT_S
from edged.pipeline.stages.inference import PendingSwap


class CountingBackend:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def _pending() -> PendingSwap:
    return PendingSwap("req-1", resolved=None)  # type: ignore[arg-type]


def test_abandoned_while_loading_is_closed_when_the_load_finishes() -> None:
    pending, backend = _pending(), CountingBackend()
    pending.abandon()
    pending.backend = backend  # the loading thread gets there late
    pending.finish()
    assert backend.closed == 1 and pending.backend is None and pending.done.is_set()


def test_abandoned_after_loading_is_closed_at_once() -> None:
    pending, backend = _pending(), CountingBackend()
    pending.backend = backend
    pending.finish()
    assert backend.closed == 0  # a normal finish: the stage adopts it
    pending.abandon()
    assert backend.closed == 1


def test_overdue_only_past_the_supervisors_swap_timeout() -> None:
    pending = _pending()
    assert not pending.overdue(pending.started + SWAP_TIMEOUT_S - 1)
    assert pending.overdue(pending.started + SWAP_TIMEOUT_S + 1)
