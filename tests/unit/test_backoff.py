"""The one backoff policy, with the parameters each of its users picks."""

from __future__ import annotations

import random

import pytest

from edged.pipeline.backoff import Backoff
from edged.pipeline.stage_processes import RESTART_BACKOFF
from edged.pipeline.stages.recovery import RELOAD_BACKOFF


def test_doubles_from_the_first_wait_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.5, max_s=3.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay(10_000) == 3.0  # no overflow however long the failures go on


def test_jitter_spreads_each_wait_within_its_fraction() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, jitter=0.2)
    rng = random.Random(7)
    for n, nominal in enumerate((1.0, 2.0, 4.0, 8.0, 8.0), start=1):
        assert nominal * 0.8 <= backoff.delay(n, rng) <= nominal * 1.2
    assert backoff.delay(1) == 1.0  # without a random source: the nominal wait


@pytest.mark.parametrize(("backoff", "waits"), [
    (RESTART_BACKOFF, [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]),  # stage restarts
    (RELOAD_BACKOFF, [1.0, 2.0, 4.0, 8.0, 10.0]),  # a broken model loaded again
])  # fmt: skip
def test_the_daemons_policies(backoff: Backoff, waits: list[float]) -> None:
    assert [backoff.delay(n) for n in range(1, len(waits) + 1)] == waits
