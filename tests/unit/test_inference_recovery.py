"""The inference stage's own turn (service) and swap handling around a broken backend: when it
starts a reload, when it gives the process up, and what it does with a load that hangs.

Most tests build the stage without a model or rings (``__new__``): these paths touch neither.
Loads run on a real background thread against a model file that does not exist, so they fail.
The last one runs the stage on a real runtime with the real model, commands over its socket."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from pathlib import Path
from typing import TypeVar

import pytest
import zmq
from prometheus_client import CollectorRegistry

from edged.backends import BackendBroken
from edged.config import EdgedConfig
from edged.metrics import Metrics
from edged.models import ResolvedVariant
from edged.pipeline.endpoints import Endpoints
from edged.pipeline.messages import (
    INFER,
    SWAP_TIMEOUT_S,
    InferenceReady,
    ModelDescriptor,
    StageEvent,
    Stats,
    Swap,
    SwapDone,
    SwapFailed,
    decode_event,
    encode,
)
from edged.pipeline.ring import RingSpec, create_ring
from edged.pipeline.stage_runtime import FRAMES, OUTPUTS, TENSORS, StageRuntime, StageSetup
from edged.pipeline.stages.inference import InferenceStage, PendingSwap, open_stage
from edged.pipeline.stages.inflight import InFlight
from edged.pipeline.stages.recovery import ReloadPolicy
from edged.pipeline.swaps import SwapCoordinator, SwapRequest
from edged.pipeline.telemetry import Telemetry
from tests.daemon import poll_until
from tests.paths import YOLOV5N, require

MODEL = ModelDescriptor("m/fp32/0", "m", "fp32", "onnxruntime", "fp32", 640, 640, "NHWC",
                        "uint8", "yolov5", ("person",))  # fmt: skip
MISSING = ResolvedVariant("m", "fp32", "onnxruntime", Path("/nonexistent/m.onnx"), "fp32",
                          "auto", "auto")  # fmt: skip


class Events:
    """The runtime's event channel to the supervisor, recorded."""

    def __init__(self) -> None:
        self.sent: list[StageEvent] = []

    def send_event(self, event: StageEvent) -> None:
        self.sent.append(event)


class Closable:
    closed = 0

    def close(self) -> None:
        self.closed += 1


def stage(broken: bool = True) -> InferenceStage:
    s = InferenceStage.__new__(InferenceStage)
    s.rt, s.config = Events(), EdgedConfig()  # type: ignore[assignment]
    s.model, s.resolved, s.generation, s.limits = MODEL, MISSING, 0, (1 << 30, 1 << 30)
    s.pending, s.broken, s.recovery = None, broken, ReloadPolicy()
    s.inflight, s.capacity = InFlight(), 1  # no frames in flight
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
    s.on_command(Swap("new", MISSING))
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
    s.on_command(Swap("r", MISSING))
    assert s.rt.sent == [SwapFailed("r", "the model is being loaded again after a backend "
                                    "failure; retry shortly")]  # fmt: skip


E = TypeVar("E")
NEW_MODEL = dataclasses.replace(MODEL, key="m/int8/1", variant="int8")


def test_a_finished_swap_tells_the_supervisor_where_the_new_models_frames_start() -> None:
    """The stage's SwapDone, through the wire encoding, into the supervisor's bookkeeping: the
    client's reply names the first frame of the new model (a renamed field fails here)."""
    s = stage(broken=False)
    s.backend, s.last_seq = Closable(), 41  # frame 41 was the old model's last
    done = PendingSwap("r", MISSING)
    done.backend, done.model = Closable(), NEW_MODEL  # type: ignore[assignment]
    done.finish()
    s.pending = done
    s.maybe_switch()
    assert s.model == NEW_MODEL and s.pending is None
    [event] = s.rt.sent
    assert isinstance(event, SwapDone) and event.last_old_seq == 41

    replies: list[dict] = []
    telemetry = Telemetry(Metrics(CollectorRegistry()))
    telemetry.set_model(MODEL)
    swaps = SwapCoordinator(telemetry, lambda stage, cmd: None,
                            lambda who, body: replies.append(json.loads(body)))  # fmt: skip
    swaps.pending = SwapRequest(b"client", "int8", time.monotonic(), MISSING, "r")
    swaps.on_result(decode_event(encode(event)))  # type: ignore[arg-type]
    swaps.check()  # nothing published yet: the reply goes at once
    assert replies[0]["ok"] and replies[0]["first_seq"] == 42


class InferenceProcess:
    """The inference stage on a real runtime (rings, sockets) with the real model, and the
    supervisor's end of its command channel."""

    def __init__(self, tmp_path: Path) -> None:
        tag = f"edgedtest_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        specs = {FRAMES: RingSpec(f"{tag}_f", 1, 64),
                 TENSORS: RingSpec(f"{tag}_t", 1, 640 * 640 * 3 * 4),
                 OUTPUTS: RingSpec(f"{tag}_o", 1, 16 << 20)}  # fmt: skip
        self.rings = [create_ring(spec) for spec in specs.values()]
        run = tmp_path / "run"
        run.mkdir()
        self.supervisor = zmq.Context.instance().socket(zmq.ROUTER)
        self.supervisor.setsockopt(zmq.LINGER, 0)
        self.supervisor.bind(Endpoints(run).supervisor)
        resolved = ResolvedVariant("yolov5n", "fp32", "onnxruntime", require(YOLOV5N), "fp32",
                                   "coco80", "auto")  # fmt: skip
        setup = StageSetup(INFER, EdgedConfig(), run, specs, lossless=False,
                           extra={"resolved": resolved})  # fmt: skip
        self.rt = StageRuntime(setup)
        self.stage = open_stage(self.rt)
        assert self.stage is not None

    def next_event(self, kind: type[E]) -> E:
        """The stage's next event of ``kind`` (counters pass by), turning its loop meanwhile."""

        def step() -> E | None:
            self.rt.poll(50)
            assert self.stage is not None
            self.stage.service()
            while self.supervisor.poll(0):
                identity, payload = self.supervisor.recv_multipart()
                assert identity == INFER.encode()
                event = decode_event(payload)
                if not isinstance(event, Stats):
                    assert isinstance(event, kind), event
                    return event
            return None

        return poll_until(step, 30.0, lambda: f"no {kind.__name__} from the inference stage")

    def close(self) -> None:
        if self.stage is not None:
            self.stage.close()
        self.rt.close()
        self.supervisor.close(0)
        for ring in self.rings:
            ring.close()
            ring.unlink()


def test_the_stage_answers_a_swap_sent_over_its_command_channel(tmp_path: Path) -> None:
    """A Swap from the supervisor reaches the inference stage's handler (not the runtime's
    default, which would only log it) and is answered: here refused, the file is missing."""
    p = InferenceProcess(tmp_path)
    try:
        p.next_event(InferenceReady)  # the ROUTER now knows the stage
        p.supervisor.send_multipart((INFER.encode(), encode(Swap("r1", MISSING))))
        result = p.next_event(SwapFailed)
        assert result.request_id == "r1", result
        assert "nonexistent" in result.error
    finally:
        p.close()
