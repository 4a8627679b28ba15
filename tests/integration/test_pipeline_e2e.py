"""The real daemon, lossless on the real video: every frame published exactly once, in order."""

import os
from pathlib import Path

import jsonschema
import pytest

from edged.pipeline.messages import STAGE_ORDER
from edged.publish.schema import JSON_SCHEMA
from tests.daemon import VIDEO, VIDEO_FRAMES, Daemon, require

pytestmark = pytest.mark.integration


def edged_shm_segments(pid: int) -> set[str]:
    """Shared-memory segments of the daemon whose supervisor has this pid."""
    return {name for name in os.listdir("/dev/shm") if name.startswith(f"edged_{pid}_")}


def collect(daemon: Daemon, sub, count: int, timeout: float = 120.0) -> list[dict]:
    messages = []
    while len(messages) < count:
        got = daemon.receive(sub, timeout)
        assert got is not None, daemon._with_log(f"only {len(messages)} of {count} messages")
        topic, message = got
        assert topic == b"detections.cam0"
        messages.append(message)
    return messages


@pytest.mark.parametrize(("fmt", "layout", "processes"),
                         [("json", "fused", 3), ("msgpack", "isolated", 5)])  # fmt: skip
def test_lossless_run_publishes_every_frame_once(
    tmp_path: Path, fmt: str, layout: str, processes: int
):
    args = ("--source", str(require(VIDEO)), "--mode", "lossless", "--format", fmt,
            "--wait-subscribers", "1", "--layout", layout)  # fmt: skip
    with Daemon(tmp_path, *args) as daemon:
        sub = daemon.subscriber()
        messages = collect(daemon, sub, VIDEO_FRAMES)
        assert daemon.receive(sub, timeout=2.0) is None  # nothing after the last frame
        daemon.wait_published(VIDEO_FRAMES)
        status = daemon.ctl("status")
        assert status["source"]["mode"] == "lossless"
        assert status["source"]["paced_by"] == "edged"  # a file: edged reads it at its own pace
        stages = status["stages"]
        assert list(stages) == list(STAGE_ORDER)
        assert len({s["pid"] for s in stages.values()}) == processes  # the layout's processes
        assert len(edged_shm_segments(daemon.pid)) == 3  # frame, tensor and output rings
        assert daemon.stop() == 0
    assert [m["seq"] for m in messages] == list(range(VIDEO_FRAMES))
    for m in messages:
        jsonschema.validate(m, JSON_SCHEMA)
        assert m["source"] == {"width": 768, "height": 432}
        assert m["model"]["name"] == "yolov5n"
        for box in (d["box"] for d in m["detections"]):
            assert 0 <= box[0] <= box[2] <= 768 and 0 <= box[1] <= box[3] <= 432
    confident = {d["label"] for m in messages for d in m["detections"] if d["confidence"] > 0.5}
    assert {"person", "car"} <= confident
    assert edged_shm_segments(daemon.pid) == set()
    if fmt == "json":
        report_figures(messages)


def report_figures(messages: list[dict]) -> None:
    """Printed for the issue note: per-stage latency of the lossless run (pytest -s shows it)."""
    import numpy as np

    span = messages[-1]["timestamp"] - messages[0]["timestamp"]
    print(f"\nlossless run: {len(messages)} frames in {span:.1f}s = {len(messages) / span:.1f} FPS")
    for stage in ("capture", "preprocess", "infer", "postprocess", "publish", "end_to_end"):
        values = [m["latency_ms"][stage] for m in messages if stage in m["latency_ms"]]
        if values:
            print(f"  {stage:12s} p50 {np.percentile(values, 50):7.2f} ms  "
                  f"p99 {np.percentile(values, 99):7.2f} ms")  # fmt: skip


def test_sigint_to_the_whole_group_drains_cleanly(tmp_path: Path):
    """Ctrl-C in a terminal hits every process; the drain still ends with exit 0, nothing left."""
    import signal

    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--loop") as daemon:
        daemon.wait_ready()
        assert edged_shm_segments(daemon.pid)
        assert daemon.stop(signal.SIGINT, group=True) == 0
    assert edged_shm_segments(daemon.pid) == set()
