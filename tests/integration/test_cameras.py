"""Several cameras in one daemon: one capture+preprocess process per camera, one shared inference
stage, every camera's detections on its own topic. Real processes, sockets and files; the slow
backend is the hailo_platform test double (the NPU is the hardware that is absent)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import pytest

from tests.daemon import VIDEO, Daemon, require
from tests.fakes.fixtures import fake_env, write_hef

pytestmark = pytest.mark.integration


def write_clip(path: Path, frames: int, skip: int = 0) -> Path:
    """The first ``frames`` frames of the shared video (after ``skip``) as a file of its own."""
    cap = cv2.VideoCapture(str(require(VIDEO)))
    writer = None
    try:
        for index in range(skip + frames):
            ok, image = cap.read()
            assert ok, f"the shared video has fewer than {skip + frames} frames"
            if index < skip:
                continue
            if writer is None:
                h, w = image.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
            writer.write(image)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    check = cv2.VideoCapture(str(path))
    assert int(check.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    check.release()
    return path


def cameras_config(clips: dict[str, Path], mode: str = "lossless", **extra: Any) -> dict[str, Any]:
    loop = mode != "lossless"  # live: the files loop until the test has seen enough
    return {
        "cameras": [
            {"id": cam, "source": {"uri": str(path), "mode": mode, "loop": loop}}
            for cam, path in clips.items()
        ],
        **extra,
    }


def collect(
    daemon: Daemon, sub, count: int, timeout: float = 120.0, more: bool = False
) -> list[tuple[str, dict]]:
    """``count`` (camera, message) pairs in publish order; nothing more after them unless
    ``more``."""
    got: list[tuple[str, dict]] = []
    while len(got) < count:
        received = daemon.receive(sub, timeout)
        assert received is not None, daemon._with_log(f"only {len(got)} of {count} messages")
        topic, message = received
        camera = topic.decode().removeprefix("detections.")
        assert message["camera_id"] == camera
        got.append((camera, message))
    assert more or daemon.receive(sub, timeout=2.0) is None, "more messages than frames"
    return got


def test_three_file_cameras_lossless_publish_every_frame_once_on_their_own_topic(
    tmp_path: Path,
) -> None:
    lengths = {"front": 7, "yard": 10, "gate": 13}
    clips = {cam: write_clip(tmp_path / f"{cam}.mp4", n, skip=20 * i)
             for i, (cam, n) in enumerate(lengths.items())}  # fmt: skip
    config = cameras_config(clips, publish={"wait_for_subscribers": 1})
    with Daemon(tmp_path, config=config) as daemon:
        sub = daemon.subscriber()
        got = collect(daemon, sub, sum(lengths.values()))
        status = daemon.ctl("status")
        # One capture+preprocess process per camera, one shared infer, one postprocess+publish.
        stages = status["stages"]
        assert {s for s in stages if s.startswith("capture")} == {
            f"capture[{cam}]" for cam in lengths
        }
        pids = {s["pid"] for s in stages.values()}
        assert len(pids) == 2 + len(lengths)
        assert len({stages[f"capture[{cam}]"]["pid"] for cam in lengths}) == len(lengths)
        for cam, n in lengths.items():
            assert status["cameras"][cam]["frames_published"] == n
        assert daemon.stop() == 0
    for cam, n in lengths.items():
        seqs = [m["seq"] for c, m in got if c == cam]
        assert seqs == list(range(n)), cam  # every frame of its file once, in order
    # Each camera's own file: its first frame is its clip's (not another camera's).
    first = {cam: next(m for c, m in got if c == cam) for cam in lengths}
    assert all(m["source"] == {"width": 768, "height": 432} for m in first.values())


@pytest.fixture
def slow_hailo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A HEF for the hailo_platform double taking 120 ms per frame (sleeping, no CPU)."""
    hef = write_hef(tmp_path / "yolov8s_h8l.hef", arch="HAILO8L")
    env = fake_env(
        EDGED_FAKE_HAILO_LATENCY_MS="120",
        EDGED_FAKE_HAILO_DETECTIONS=json.dumps([[2, 0.4, 0.3, 0.6, 0.7, 0.9]]),
    )
    return hef, env  # fmt: skip


@pytest.mark.parametrize("mode", ["lossless", "realtime"])
def test_a_slow_backend_serves_the_cameras_in_turn(tmp_path: Path, slow_hailo, mode: str) -> None:
    """Inference is the bottleneck (120 ms a frame; capture and letterbox take a few ms): every
    camera keeps frames waiting, and the scheduler takes them round-robin. From the moment all
    three have started (their processes start one after another, seconds apart on a busy
    machine) until one runs out of frames, no camera gets more than 2 frames ahead of another
    (a strict a-b-c turn keeps it at 1; the slack allows the frames in flight at the start).
    Realtime (live: files paced at 25 fps, looping, latest frame wins per camera): the same
    turn, each camera's newest frame; the older ones are dropped and counted per camera."""
    hef, env = slow_hailo
    lossless = mode == "lossless"
    lengths = {"a": 12, "b": 12, "c": 12}
    clips = {cam: write_clip(tmp_path / f"{cam}.mp4", n) for cam, n in lengths.items()}
    config = cameras_config(clips, mode, publish={"wait_for_subscribers": 1})
    with Daemon(tmp_path, "--model", str(hef), model=None, config=config, env=env) as daemon:
        sub = daemon.subscriber()
        got = collect(daemon, sub, sum(lengths.values()), more=not lossless)
        if not lossless:
            scrape = daemon.metrics()
        assert daemon.stop() == 0
    order = [cam for cam, _ in got]
    all_started = max(order.index(cam) for cam in lengths)
    if lossless:
        first_done = min(len(order) - order[::-1].index(cam) - 1 for cam in lengths)
    else:
        first_done = len(order)
    assert first_done - all_started >= 2 * len(lengths), f"too short a window: {order}"
    counts: Counter[str] = Counter()
    for cam in order[all_started:first_done]:
        counts[cam] += 1
        spread = max(counts[k] for k in lengths) - min(counts[k] for k in lengths)
        assert spread <= 2, f"unfair order {order}"
    for cam, n in lengths.items():
        seqs = [m["seq"] for c, m in got if c == cam]
        if lossless:
            assert seqs == list(range(n))
        else:  # newest first: increasing, with the skipped frames counted as dropped
            assert seqs == sorted(set(seqs))
    if not lossless:
        assert scrape.total("edged_frames_total", outcome="dropped") > 0
