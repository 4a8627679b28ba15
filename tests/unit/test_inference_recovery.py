"""The inference stage's own turn (service) and swap handling around a broken backend: when it
starts a reload, when it gives the process up, and what it does with a load that hangs.

The stage is built without a model or rings (``__new__``): these paths touch neither. Loads
run on a real background thread against a model file that does not exist, so they fail."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edged.backends import BackendBroken
from edged.config import EdgedConfig
from edged.models import ResolvedVariant
from edged.pipeline.messages import SWAP_TIMEOUT_S, Command, ModelDescriptor
from edged.pipeline.stages.inference import InferenceStage, PendingSwap
from edged.pipeline.stages.recovery import ReloadPolicy

MODEL = ModelDescriptor("m/fp32/0", "m", "fp32", "onnxruntime", "fp32", 640, 640, "NHWC",
                        "uint8", "yolov5", ("person",))  # fmt: skip
MISSING = ResolvedVariant("m", "fp32", "onnxruntime", Path("/nonexistent/m.onnx"), "fp32",
                          "auto", "auto")  # fmt: skip


class Events:
    """The runtime's event channel to the supervisor, recorded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send_event(self, kind: str, **data: object) -> None:
        self.sent.append((kind, data))


class Closable:
    closed = 0

    def close(self) -> None:
        self.closed += 1


def stage(broken: bool = True) -> InferenceStage:
    s = InferenceStage.__new__(InferenceStage)
    s.rt, s.config = Events(), EdgedConfig()  # type: ignore[assignment]
    s.model, s.resolved, s.generation, s.limits = MODEL, MISSING, 0, (1 << 30, 1 << 30)
    s.pending, s.broken, s.recovery = None, broken, ReloadPolicy()
    return s


def test_a_broken_backend_is_loaded_again_only_when_its_pause_is_over() -> None:
    s = stage()
    s.recovery.next_attempt_at = time.monotonic() + 60  # a failed attempt asked for a pause
    s.service()
    assert s.pending is None
    s.recovery.next_attempt_at = 0.0
    s.service()
    assert s.pending is not None and s.pending.is_reload


def test_the_process_is_given_up_after_too_many_failed_reloads() -> None:
    s = stage()
    s.recovery.failures = s.recovery.max_failures
    with pytest.raises(BackendBroken, match="failed to load again 5 times"):
        s.service()


def test_a_reload_that_hangs_is_abandoned_and_the_process_given_up() -> None:
    s = stage()
    hung = PendingSwap(None, MISSING)
    hung.started = time.monotonic() - s.recovery.hung_s - 1
    s.pending = hung
    with pytest.raises(BackendBroken, match="hung for 60 s"):
        s.service()
    late = Closable()
    hung.backend = late  # the driver call returns after all
    hung.finish()
    assert late.closed == 1  # abandoned: closed, never served


def test_a_reload_still_in_time_is_waited_for() -> None:
    s = stage()
    s.pending = PendingSwap(None, MISSING)
    s.service()  # no raise, no second load
    assert s.pending is not None and not s.pending.done.is_set()


def test_a_swap_replaces_a_load_stuck_past_the_swap_timeout() -> None:
    s = stage(broken=False)
    stuck = PendingSwap("old", MISSING)
    stuck.started = time.monotonic() - SWAP_TIMEOUT_S - 1
    s.pending = stuck
    s.on_command(Command("swap", {"request_id": "new", "resolved": MISSING}))
    assert s.pending is not stuck and s.pending.request_id == "new"
    late = Closable()
    stuck.backend = late
    stuck.finish()
    assert late.closed == 1
    s.pending.done.wait(30)  # the new load fails on the missing file, on its thread
    assert s.pending.error


def test_a_swap_during_a_reload_is_refused_with_that_reason() -> None:
    s = stage()
    s.pending = PendingSwap(None, MISSING)
    s.on_command(Command("swap", {"request_id": "r", "resolved": MISSING}))
    assert s.rt.sent == [("swap_result", {"request_id": "r", "ok": False, "error":
                          "the model is being loaded again after a backend failure; retry "
                          "shortly"})]  # fmt: skip
