"""Picamera2Source on a real Raspberry Pi camera.

Skips itself unless the real picamera2/libcamera import (``sudo apt install python3-picamera2``,
venv with --system-site-packages) and libcamera sees a camera.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edged.sources.picamera2 import Picamera2Source

pytestmark = pytest.mark.hardware

FAKES = Path(__file__).resolve().parents[1] / "fakes"


@pytest.fixture(scope="module")
def camera_count() -> int:
    try:
        import picamera2
    except Exception as exc:
        pytest.skip(f"picamera2 not importable: {exc}")
    if Path(picamera2.__file__).resolve().is_relative_to(FAKES):
        pytest.skip("picamera2 is the test double, not the real package")
    try:
        cameras = picamera2.Picamera2.global_camera_info()
    except Exception as exc:
        pytest.skip(f"libcamera cannot list cameras: {exc}")
    if not cameras:
        pytest.skip("no camera connected")
    return len(cameras)


def test_frames_at_the_requested_size_and_rate(camera_count: int) -> None:
    with Picamera2Source(0, 640, 480, 30) as source:
        assert (source.info.width, source.info.height) == (640, 480)
        assert source.info.fps == pytest.approx(30, rel=0.01)
        frames = []
        started = time.monotonic()
        for _ in range(30):
            frame = source.read()
            assert frame is not None
            frames.append(frame)
        elapsed = time.monotonic() - started
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in frames)
    assert elapsed < 3.0  # ~1 s at 30 fps; generous for a loaded Pi
    # a live sensor: consecutive frames are not bit-identical
    assert any(not np.array_equal(frames[i], frames[i + 1]) for i in range(len(frames) - 1))


def test_second_open_of_the_same_camera_is_refused(camera_count: int) -> None:
    from edged.sources.base import SourceError

    with Picamera2Source(0, 640, 480, None), pytest.raises(SourceError, match="in use"):
        Picamera2Source(0, 640, 480, None)
