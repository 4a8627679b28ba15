"""/readyz's verdict from the pipeline's events (Telemetry.ready), on a controlled clock."""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry

from edged.metrics import Metrics
from edged.pipeline.messages import EndOfStream, ModelDescriptor, SourceLost, Stats
from edged.pipeline.status import status_line
from edged.pipeline.telemetry import Telemetry
from tests.stage_events import connected, published_frame, stats

MODEL = ModelDescriptor("m/fp32/1", "m", "fp32", "onnxruntime", "fp32", 640, 640, "NHWC",
                        "uint8", "yolov5", ("person",))  # fmt: skip


def _published(seq: int, at: float) -> Stats:
    """The publish stage's counters flush with one frame, published at ``at`` (monotonic)."""
    return stats(published_frame(seq, at, MODEL.key))


def test_ready_while_frames_flow_and_not_the_moment_the_file_ends() -> None:
    now = [100.0]
    telemetry = Telemetry(Metrics(CollectorRegistry()), clock=lambda: now[0])
    assert telemetry.ready(5.0) == (False, "model not loaded")
    telemetry.set_model(MODEL)
    telemetry.handle("capture", connected())
    for seq in range(3):
        telemetry.handle("publish", _published(seq, now[0]))
    ok, reason = telemetry.ready(5.0)
    assert ok, reason
    telemetry.handle("capture", EndOfStream(3))
    assert telemetry.ready(5.0) == (False, "source ended after 3 published frames")
    now[0] += 1.0  # well inside ready_max_age_s: ended is ended
    assert telemetry.ready(5.0)[0] is False


def test_a_stalled_pipeline_turns_unready_after_the_max_age() -> None:
    now = [100.0]
    telemetry = Telemetry(Metrics(CollectorRegistry()), clock=lambda: now[0])
    telemetry.set_model(MODEL)
    telemetry.handle("capture", connected())
    telemetry.handle("publish", _published(0, now[0]))
    now[0] += 4.0
    assert telemetry.ready(5.0)[0] is True
    now[0] += 2.0
    assert telemetry.ready(5.0) == (False, "no frame published for 6.0s (pipeline stalled)")


def test_age_counts_from_the_publish_time_not_from_when_the_batch_arrived() -> None:
    """Records reach the supervisor with the counters, up to ``stats_interval_s`` late."""
    now = [100.0]
    telemetry = Telemetry(Metrics(CollectorRegistry()), clock=lambda: now[0])
    telemetry.set_model(MODEL)
    telemetry.handle("capture", connected())
    telemetry.handle("publish", _published(0, now[0] - 3.0))
    assert telemetry.ready(2.5) == (False, "no frame published for 3.0s (pipeline stalled)")
    assert telemetry.ready(5.0)[0] is True


def test_one_camera_of_several_down_is_degraded_not_unready() -> None:
    """Several cameras: ready while one flows; the reason names each camera that does not, and
    the STATUS line counts the connected ones. None flowing: not ready, each camera's why."""
    now = [100.0]
    telemetry = Telemetry(Metrics(CollectorRegistry()), clock=lambda: now[0])
    telemetry.set_model(MODEL)
    for camera in ("front", "yard"):
        telemetry.add_camera(camera)
        telemetry.handle("capture", connected(), camera=camera)
    frame = dataclasses.replace(published_frame(0, now[0], MODEL.key), camera="front")
    telemetry.handle("publish", stats(frame))
    telemetry.handle("capture", SourceLost("connection refused"), camera="yard")
    ok, reason = telemetry.ready(5.0)
    assert ok and "degraded: yard: source disconnected: connection refused" in reason, reason
    line = status_line(telemetry.state)
    assert "1/2 cameras connected" in line and "yard: connection refused" in line, line
    assert telemetry.camera_verdicts(5.0)["front"][0] is True
    now[0] += 10.0  # front stalls too
    ok, reason = telemetry.ready(5.0)
    assert not ok and reason.startswith("no camera flowing (front: no frame published for 10.0s")
