"""Picamera2Source against the picamera2/libcamera test doubles (tests/fakes).

These check edged's use of picamera2's documented API (video configuration, RGB888 = BGR in
memory, FrameDurationLimits, capture_array jobs with timeouts, clear errors); they do not prove
anything about a real camera — tests/hardware/test_picamera2_camera.py does that on a Pi.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from edged.sources.base import FrameSource, SourceError
from edged.sources.picamera2 import (
    Picamera2Source,
    import_picamera2,
    requested_size,
)

try:
    from tests.fakes.fixtures import fake_picamera2
except ModuleNotFoundError:  # tests/unit is not a package and the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.fakes.fixtures import fake_picamera2

__all__ = ["fake_picamera2"]  # the fixture, imported for pytest

RED_BGR = [0, 0, 255]
BLUE_BGR = [255, 0, 0]


def test_reads_bgr_frames_at_the_requested_size(fake_picamera2: ModuleType) -> None:
    with Picamera2Source(0, 640, 480, 30) as source:
        assert isinstance(source, FrameSource)
        info = source.info
        assert (info.kind, info.uri, info.width, info.height, info.live) == (
            "picamera2",
            "picamera2:0",
            640,
            480,
            True,
        )
        assert info.fps == pytest.approx(30, rel=1e-3)
        frame = source.read()
    assert frame is not None
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert frame.flags.c_contiguous
    # the scene is red on the left, blue on the right: in BGR order, as OpenCV expects
    assert frame[240, 100].tolist() == RED_BGR
    assert frame[240, 600].tolist() == BLUE_BGR


def test_requests_a_video_configuration_with_rgb888_and_frame_duration(
    fake_picamera2: ModuleType,
) -> None:
    with Picamera2Source(0, 1280, 720, 15):
        (config,) = fake_picamera2.FAKE.configs
    assert config["use_case"] == "video"
    assert config["main"]["format"] == "RGB888"
    assert config["main"]["size"] == (1280, 720)
    assert config["controls"]["FrameDurationLimits"] == (66667, 66667)


def test_default_size_and_fps(fake_picamera2: ModuleType) -> None:
    with Picamera2Source(0, None, None, None) as source:
        assert (source.info.width, source.info.height) == (1280, 720)
        assert source.info.fps == pytest.approx(30, rel=1e-3)  # picamera2's video default


def test_one_side_given_uses_the_sensor_aspect() -> None:
    assert requested_size(1536, None, (4608, 2592)) == (1536, 864)
    assert requested_size(None, 864, (4608, 2592)) == (1536, 864)
    assert requested_size(639, 479, None) == (640, 480)  # libcamera wants even sizes
    assert requested_size(None, None, (4608, 2592)) == (1280, 720)


def test_frames_keep_coming(fake_picamera2: ModuleType) -> None:
    with Picamera2Source(0, 320, 240, 100) as source:
        seqs = []
        for _ in range(5):
            frame = source.read()
            assert frame is not None
            seqs.append(int(frame[0, 0, 1]))
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


def test_second_camera(fake_picamera2: ModuleType) -> None:
    fake_picamera2.FAKE.cameras = 2
    with Picamera2Source(1, 320, 240, None) as source:
        assert source.info.uri == "picamera2:1"
        assert source.read() is not None
    assert fake_picamera2.FAKE.opened == [1]


def test_no_camera(fake_picamera2: ModuleType) -> None:
    fake_picamera2.FAKE.cameras = 0
    with pytest.raises(SourceError, match=r"no camera detected.*rpicam-hello --list-cameras"):
        Picamera2Source(0, None, None, None)


def test_camera_index_out_of_range(fake_picamera2: ModuleType) -> None:
    with pytest.raises(SourceError, match=r"camera 1 does not exist \(libcamera sees 0: imx708\)"):
        Picamera2Source(1, None, None, None)


def test_camera_in_use(fake_picamera2: ModuleType) -> None:
    with (
        Picamera2Source(0, 320, 240, None),
        pytest.raises(SourceError, match="in use by another process"),
    ):
        Picamera2Source(0, 320, 240, None)
    # released on close: opening again works
    with Picamera2Source(0, 320, 240, None) as again:
        assert again.read() is not None


def test_failed_opens_of_a_busy_camera_leak_no_descriptors(fake_picamera2: ModuleType) -> None:
    """picamera2 opens a pipe before it acquires the camera and keeps the half-built object: a
    day of retries against a camera another process holds must not exhaust descriptors."""
    with Picamera2Source(0, 320, 240, None):  # holds the camera
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            with pytest.raises(SourceError, match="in use by another process"):
                Picamera2Source(0, 320, 240, None)
        assert len(os.listdir("/proc/self/fd")) == before


def test_stalled_camera_times_out_and_still_closes(fake_picamera2: ModuleType) -> None:
    """picamera2 runs stop() behind the capture that never completed, which blocks forever
    (a dislodged cable): the source flushes the job queue on the timeout and before closing."""
    with Picamera2Source(0, 320, 240, None, frame_timeout_s=0.2) as source:
        fake_picamera2.FAKE.stall = True
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"no frame for 0\.2 s"):
            source.read()
        # The stalled capture never completes: the bound only catches a read waiting for good.
        assert time.monotonic() - started < 30
    assert fake_picamera2.FAKE.hung_stops == 0


def test_close_flushes_a_capture_left_pending(fake_picamera2: ModuleType) -> None:
    source = Picamera2Source(0, 320, 240, None)
    fake_picamera2.FAKE.stall = True
    source._camera.capture_array("main", wait=False)  # as a read abandoned mid-capture would
    source.close()
    assert fake_picamera2.FAKE.hung_stops == 0


def test_camera_module_3_focuses_continuously_and_the_hq_camera_is_left_alone(
    fake_picamera2: ModuleType,
) -> None:
    import libcamera

    fake_picamera2.FAKE.cameras = 2
    with Picamera2Source(0, 320, 240, None), Picamera2Source(1, 320, 240, None):
        imx708, imx477 = fake_picamera2.FAKE.configs
    assert imx708["controls"]["AfMode"] == libcamera.controls.AfModeEnum.Continuous
    assert "AfMode" not in imx477["controls"]


def test_picamera2_broken_by_numpy_2_is_a_source_error_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    def broken(name: str) -> ModuleType:
        raise ValueError("numpy.dtype size changed, may indicate binary incompatibility")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(SourceError, match=r"ValueError: numpy.dtype size changed.*numpy<2"):
        import_picamera2()


def test_capture_failure_is_a_source_error(fake_picamera2: ModuleType) -> None:
    fake_picamera2.FAKE.fail_after = 1
    with Picamera2Source(0, 320, 240, None) as source:
        assert source.read() is not None
        with pytest.raises(SourceError, match=r"capture failed.*timed out"):
            source.read()


def test_closed_source(fake_picamera2: ModuleType) -> None:
    source = Picamera2Source(0, 320, 240, None)
    source.close()
    source.close()
    with pytest.raises(SourceError, match="closed"):
        source.read()


def test_picamera2_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError, match=r"apt install python3-picamera2.*system-site-packages"):
        import_picamera2()
    with pytest.raises(SourceError, match="picamera2 is not installed"):
        Picamera2Source(0, None, None, None)


def test_libcamera_missing(fake_picamera2: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # the double imports libcamera like the real package; hide both and import afresh
    monkeypatch.delitem(sys.modules, "picamera2")
    monkeypatch.setitem(sys.modules, "libcamera", None)
    with pytest.raises(SourceError, match=r"libcamera's Python bindings.*system-site-packages"):
        import_picamera2()
