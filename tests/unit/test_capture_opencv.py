"""OpenCVSource against real sockets: this OpenCV build's FFmpeg timeouts really fire.

``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC`` are what keeps a dead network
camera from blocking capture forever; these tests pin them down with opencv-python-headless as
installed: a server that accepts and never answers, one that streams a little MPEG-TS and then
goes quiet with the connection still open, and a port nobody listens on.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edged.sources import SourceError
from edged.sources.base import SourceUnusable
from edged.sources.kinds import classify_uri
from edged.sources.opencv import OpenCVSource, to_bgr8
from tests.paths import VIDEO, require


class SilentServer:
    """Accepts TCP connections; sends ``payload`` (if any) on each, then keeps it open, silent."""

    def __init__(self, payload: bytes = b"") -> None:
        self.payload = payload
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.payload:
                conn.sendall(self.payload)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture(scope="module")
def ts_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Two seconds of the test video as MPEG-TS (stream copy, no re-encode)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed")
    out = tmp_path_factory.mktemp("ts") / "clip.ts"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(require(VIDEO)),
                    "-t", "2", "-c", "copy", "-an", "-f", "mpegts", str(out)],
                   check=True, timeout=60)  # fmt: skip
    return out.read_bytes()


def test_open_times_out_on_a_server_that_never_answers() -> None:
    server = SilentServer()
    try:
        started = time.monotonic()
        with pytest.raises(SourceError, match="cannot open stream"):
            OpenCVSource(f"tcp://127.0.0.1:{server.port}", open_timeout_s=1.0)
        # At least the timeout; well under FFmpeg's own 30 s default, which is what a timeout
        # not passed on would wait (20x the 1 s: room for a busy machine, not a speed figure).
        assert 0.8 <= time.monotonic() - started < 20
    finally:
        server.close()


def test_open_fails_at_once_when_nobody_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nobody listens there now
    started = time.monotonic()
    with pytest.raises(SourceError):
        OpenCVSource(f"tcp://127.0.0.1:{port}", open_timeout_s=60.0)
    # A refused connection fails at once; one that waited would wait out the 60 s timeout
    # (half of it is left to a busy machine's start-up of FFmpeg).
    assert time.monotonic() - started < 30


def test_read_times_out_when_a_stream_goes_quiet(ts_clip: bytes) -> None:
    server = SilentServer(ts_clip)  # 2 s of video, then silence on an open connection
    try:
        source = OpenCVSource(f"tcp://127.0.0.1:{server.port}", open_timeout_s=10.0,
                              read_timeout_s=1.0)  # fmt: skip
        assert source.info.live and (source.info.width, source.info.height) == (768, 432)
        frames = 0
        started = time.monotonic()
        with pytest.raises(SourceError, match="stopped delivering"):
            while time.monotonic() - started < 60:
                image = source.read()
                assert image is not None and image.shape == (432, 768, 3)
                frames += 1
                last = time.monotonic()
        assert frames >= 12  # most of the clip arrived before the silence
        # The 1 s read timeout, not FFmpeg's 30 s default (20x: room for a busy machine).
        assert time.monotonic() - last < 20, "the read timeout did not fire"
        source.close()
    finally:
        server.close()


def test_files_end_with_none_and_missing_files_fail(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        OpenCVSource(str(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(SourceError, match="cannot open file"):
        OpenCVSource(str(junk))
    source = OpenCVSource(str(require(VIDEO)))
    assert not source.info.live and source.info.frame_count
    count = 0
    while source.read() is not None:
        count += 1
    assert count >= 400
    source.close()


@pytest.mark.parametrize("threads", [None, 2])
def test_decoder_threads_follow_the_config_and_decode_the_same_frames(threads) -> None:
    import cv2

    from edged.config import SourceConfig
    from edged.sources import open_source

    default = open_source(SourceConfig(uri=str(require(VIDEO))))
    other = open_source(SourceConfig(uri=str(require(VIDEO)), decode_threads=threads))
    try:
        assert default._cap.get(cv2.CAP_PROP_N_THREADS) == 1  # the daemon's default
        if threads:
            assert other._cap.get(cv2.CAP_PROP_N_THREADS) == threads
        for _ in range(5):
            np.testing.assert_array_equal(default.read(), other.read())
    finally:
        default.close()
        other.close()


def test_classify_uri() -> None:
    assert classify_uri("rtsp://cam/1") == "stream"
    assert classify_uri("tcp://127.0.0.1:1") == "stream"
    assert classify_uri("/dev/video0") == classify_uri("0") == "v4l2"
    assert classify_uri("video.mp4") == "file"
    # A USB camera's stable name, present or not (unplugged at start-up: still a camera).
    assert classify_uri("/dev/v4l/by-id/usb-046d_C920_8F7A-video-index0") == "v4l2"
    assert classify_uri("/dev/null") == "v4l2"  # any character device is a device, not a file


def test_a_v4l2_device_that_cannot_open_is_retried_not_refused_as_a_file() -> None:
    with pytest.raises(SourceError) as failure:
        OpenCVSource("/dev/v4l/by-id/usb-no-such-camera-video-index0")
    assert "not found" not in str(failure.value) and not isinstance(failure.value, SourceUnusable)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((4, 6), np.uint8), ((4, 6, 1), np.uint8), ((4, 6, 4), np.uint8), ((4, 6, 3), np.uint16),
     ((4, 6), np.uint16)],
)  # fmt: skip
def test_odd_frames_become_bgr8(shape, dtype) -> None:
    frame = np.full(shape, 200 if dtype == np.uint8 else 200 * 256, dtype)
    out = to_bgr8(frame)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    assert int(out[0, 0, 0]) == 200


def test_frames_that_are_no_image_are_left_for_capture_to_refuse() -> None:
    for frame in (np.zeros((4, 6, 2), np.uint8), np.zeros((4, 6, 3), np.float32),
                  np.zeros(10, np.uint8)):  # fmt: skip
        assert to_bgr8(frame) is frame
