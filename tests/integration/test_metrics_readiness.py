"""/readyz follows the frames: 503 with a reason when a live stream stops, 200 when it is back.

FFmpeg serves the test video as an MPEG-TS stream over TCP (``-re``: at its frame rate, like a
camera); edged reads it as a live source. Killing FFmpeg stops the frames (the capture stage
starts reconnecting with backoff), starting it again on the same port brings them back, and
the reconnect shows up in ``edged_source_reconnects_total``. The "source ended" case (a file
without --loop) is covered in test_metrics_exposition.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.daemon import VIDEO, Daemon, free_port, require

pytestmark = pytest.mark.integration

READY_MAX_AGE_S = 2.0


class StreamServer:
    """``ffmpeg -re -stream_loop -1 -i video -c copy -f mpegts tcp://127.0.0.1:PORT?listen=1``."""

    def __init__(self, binary: str, video: Path, port: int, log_path: Path) -> None:
        self.argv = [
            binary, "-hide_banner", "-nostdin", "-loglevel", "error",
            "-re", "-stream_loop", "-1", "-i", str(video),
            "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1",
        ]  # fmt: skip
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # abrupt, like a camera losing power or the network dropping
            self.proc.wait(10)
        self.proc = None


def test_readyz_503_while_the_stream_is_down_and_200_when_it_is_back(tmp_path: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed (apt-get install ffmpeg; .ci/setup does)")
    port = free_port()
    stream = StreamServer(ffmpeg, require(VIDEO), port, tmp_path / "ffmpeg.log")
    stream.start()
    config = {
        "http": {"ready_max_age_s": READY_MAX_AGE_S},
        # Quick retries keep the test short; the backoff logic itself is the capture stage's.
        "source": {"reconnect": {"initial_backoff_s": 0.2, "max_backoff_s": 1.0}},
    }
    try:
        with Daemon(tmp_path / "edged", "--source", f"tcp://127.0.0.1:{port}",
                    config=config) as daemon:  # fmt: skip
            reason = daemon.wait_ready(timeout=120)
            assert "fps" in reason
            before = daemon.metrics().value("edged_source_reconnects_total")

            stream.stop()
            reason = daemon.wait_status("/readyz", 503, timeout=READY_MAX_AGE_S + 15)
            assert "source disconnected" in reason, reason
            assert daemon.probe("/healthz")[0] == 200, "a stalled source is not a dead daemon"
            assert daemon.metrics().value("edged_source_connected") == 0

            stream.start()
            reason = daemon.wait_status("/readyz", 200, timeout=60)
            assert "fps" in reason
            scrape = daemon.metrics()
            assert scrape.value("edged_source_reconnects_total") >= before + 1
            assert scrape.value("edged_source_connected") == 1
            assert daemon.stop() == 0
    finally:
        stream.stop()
