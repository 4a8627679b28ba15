"""What `edged ctl status` and the systemd STATUS line say about the cameras (pure, from the
supervisor's bookkeeping fed with stage events as the stages send them)."""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry

from edged.metrics import Metrics
from edged.pipeline.messages import EndOfStream, ModelDescriptor, SourceLost, Stats
from edged.pipeline.status import pipeline_status, status_line
from edged.pipeline.telemetry import Telemetry
from tests.stage_events import connected, published_frame, stats

MODEL = ModelDescriptor("m/fp32/1", "m", "fp32", "onnxruntime", "fp32", 640, 640, "NHWC",
                        "uint8", "yolov5", ("person",))  # fmt: skip


def telemetry_with(*cameras: str) -> Telemetry:
    telemetry = Telemetry(Metrics(CollectorRegistry()), clock=lambda: 100.0)
    telemetry.set_model(MODEL)
    for camera in cameras:
        telemetry.add_camera(camera)
        telemetry.handle("capture", connected(), camera=camera)
    return telemetry


def live(telemetry: Telemetry) -> dict[str, str]:
    """Every camera the telemetry knows in live mode, as the supervisor resolves modes."""
    return dict.fromkeys(telemetry.state.cameras, "live")


def publish(telemetry: Telemetry, camera: str, seq: int) -> None:
    frame = dataclasses.replace(published_frame(seq, 100.0, MODEL.key), camera=camera)
    telemetry.handle("publish", stats(frame))


def shared_stage_counts(**by_camera: dict[str, int]) -> Stats:
    """The shared inference stage's counters flush: its outcomes per camera."""
    total = {k: sum(c.get(k, 0) for c in by_camera.values()) for k in ("ok", "dropped", "error")}
    return Stats(total, 0, (), by_camera)


def test_one_camera_keeps_its_id_and_last_seq_at_the_top() -> None:
    telemetry = telemetry_with("door")
    publish(telemetry, "door", 41)
    report = pipeline_status(telemetry.state, live(telemetry))
    assert report["camera_id"] == "door" and report["last_seq"] == 41
    assert list(report["cameras"]) == ["door"]
    door = report["cameras"]["door"]
    assert door["id"] == "door" and door["last_seq"] == 41 and door["frames_published"] == 1
    assert report["source"]["connected"] is True and report["source"]["uri"] == "clip.mp4"


def test_several_cameras_have_no_top_level_id_and_each_says_its_own_state() -> None:
    telemetry = telemetry_with("front", "yard", "gate")
    publish(telemetry, "front", 7)
    publish(telemetry, "yard", 3)
    telemetry.handle("infer", shared_stage_counts(front={"dropped": 5}, yard={"error": 1}))
    telemetry.handle("capture", Stats({"dropped": 2}, 0, (), {"yard": {"dropped": 2}}), "yard")
    telemetry.handle("capture", SourceLost("connection refused"), camera="yard")
    telemetry.handle("capture", EndOfStream(9), camera="gate")
    report = pipeline_status(telemetry.state, live(telemetry))
    assert "camera_id" not in report and "last_seq" not in report  # seqs count per camera
    assert list(report["cameras"]) == ["front", "yard", "gate"]  # config order
    front, yard, gate = (report["cameras"][c] for c in ("front", "yard", "gate"))
    assert (front["id"], front["last_seq"], front["frames_published"]) == ("front", 7, 1)
    assert (front["frames_dropped"], front["frame_errors"]) == (5, 0)
    assert (yard["frames_dropped"], yard["frame_errors"]) == (2, 1)
    assert yard["source"]["connected"] is False and yard["source"]["error"] == "connection refused"
    assert gate["source"]["ended"] is True and gate["source"]["error"] is None
    # The top level is the whole pipeline: totals and the sources' summary.
    totals = (report["frames_published"], report["frames_dropped"], report["frame_errors"])
    assert totals == (2, 7, 1)
    assert report["source"]["cameras"] == 3 and report["source"]["connected"] is False
    assert report["source"]["error"] == "yard: connection refused"
    assert status_line(telemetry.state).endswith(
        " fps, m/fp32, 2 frames published; 1/3 cameras connected; yard: connection refused; "
        "gate: ended")  # fmt: skip


def test_the_status_line_names_every_camera_that_is_not_connected_as_status_does() -> None:
    telemetry = telemetry_with("front")
    telemetry.add_camera("new")  # a reload added it: no source event yet
    report = pipeline_status(telemetry.state, live(telemetry))
    assert report["cameras"]["new"]["source"]["connected"] is False
    assert status_line(telemetry.state).endswith("; 1/2 cameras connected; new: connecting")


def test_a_reconnected_camera_keeps_its_last_error_and_counts_the_reconnect() -> None:
    telemetry = telemetry_with("a", "b")
    telemetry.handle("capture", SourceLost("stalled"), camera="b")
    telemetry.handle("capture", connected(reconnect=True), camera="b")
    b = pipeline_status(telemetry.state, live(telemetry))["cameras"]["b"]["source"]
    assert (b["connected"], b["error"], b["last_error"], b["reconnects"]) == (
        True, None, "stalled", 1)  # fmt: skip
    a = pipeline_status(telemetry.state, live(telemetry))["cameras"]["a"]["source"]
    assert (a["last_error"], a["reconnects"]) == (None, 0)


def test_frames_of_a_removed_camera_or_of_none_count_in_no_camera_of_the_report() -> None:
    telemetry = telemetry_with("a", "b")
    telemetry.remove_camera("b")
    telemetry.handle("infer", shared_stage_counts(a={"dropped": 1}, b={"dropped": 4}))
    telemetry.handle("infer", shared_stage_counts(**{"": {"error": 1}}))
    report = pipeline_status(telemetry.state, live(telemetry))
    assert list(report["cameras"]) == ["a"] and report["camera_id"] == "a"
    assert report["cameras"]["a"]["frames_dropped"] == 1
    assert (report["frames_dropped"], report["frame_errors"]) == (1, 1)


def test_one_camera_left_after_a_reload_reports_its_own_last_seq() -> None:
    """Frames of a removed camera still in flight must not show as the remaining camera's."""
    telemetry = telemetry_with("a", "b")
    publish(telemetry, "a", 120)
    publish(telemetry, "b", 500)
    telemetry.remove_camera("b")
    publish(telemetry, "b", 501)  # in flight when b was removed
    report = pipeline_status(telemetry.state, live(telemetry))
    assert report["camera_id"] == "a" and report["last_seq"] == 120
    assert report["cameras"]["a"]["last_seq"] == 120


def test_each_camera_reports_its_own_mode_and_the_pipeline_the_combined_one() -> None:
    telemetry = telemetry_with("file", "street")
    report = pipeline_status(telemetry.state, {"file": "realtime", "street": "live"})
    assert report["cameras"]["file"]["source"]["mode"] == "realtime"
    assert report["cameras"]["street"]["source"]["mode"] == "live"
    assert report["source"]["mode"] == "mixed"
