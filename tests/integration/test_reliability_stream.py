"""A real network stream that dies, stalls and comes back: edged reconnects by itself.

FFmpeg serves the test video as MPEG-TS over TCP on loopback, at its frame rate (``-re``), like a
camera. Two failures, in one daemon run:

1. FFmpeg is killed (the connection drops): reads fail at once, capture backs off with growing
   delays, /readyz turns 503; FFmpeg starts again and edged reconnects.
2. FFmpeg is frozen with SIGSTOP (the connection stays open, no byte arrives): only the stall
   timeout notices; FFmpeg is then replaced and edged reconnects again.

The reconnect time is measured from FFmpeg listening again to the first published frame captured
after that (``pytest -s`` prints it); it includes FFmpeg's stream probing on open (~2 s here).
"""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

import pytest

from edged.tools.pipeline_bench import streams
from tests.daemon import VIDEO, Daemon, free_port, poll_until, require

pytestmark = pytest.mark.integration

# Longer than the stall limit below: a frozen stream must turn /readyz 503 for its source,
# not first for the age of the last frame.
READY_MAX_AGE_S = 5.0
# 36 frame intervals of the 12 fps stream: a busy machine's pause in a nice-10 capture is no stall
STALL_TIMEOUT_S = 3.0


class StreamServer(streams.StreamServer):
    """The bench's camera stream (``ffmpeg -re -stream_loop -1 -i VIDEO -an -c copy -f mpegts
    tcp://127.0.0.1:PORT?listen=1``), skipped where FFmpeg is absent.

    Video only, like a camera: with the file's audio track, ``-re`` pauses the stream for 0.97 s
    each time the file starts over (measured; without audio no gap tops 0.12 s), a stall by
    another name for a 1 s stall timeout once a slow run lasts past the 38 s loop.
    """

    def __init__(self, video: Path, port: int, log_path: Path) -> None:
        if streams.ffmpeg_path() is None:
            pytest.skip("ffmpeg not installed (apt-get install ffmpeg; .ci/setup does)")
        super().__init__(str(video), log_path, port)

    def start(self) -> float:  # type: ignore[override]
        """Start FFmpeg; returns the wall time once it listens (for the reconnect figure)."""
        return super().start()[1]


def first_frame_captured_after(daemon: Daemon, sub, wall: float, timeout: float) -> float:
    """Seconds from ``wall`` to the arrival of a message captured after it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = Daemon.receive(sub, timeout=max(0.05, deadline - time.monotonic()))
        if got is not None and got[1]["timestamp"] > wall:
            return time.time() - wall
    raise AssertionError(daemon._with_log(f"no frame captured after {wall} within {timeout}s"))


def retry_delays(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"retrying in ([0-9.]+)s", log)]


@pytest.fixture
def stream(tmp_path: Path):
    server = StreamServer(require(VIDEO), free_port(), tmp_path / "ffmpeg.log")
    yield server
    server.stop()


def test_stream_killed_then_frozen_edged_reconnects_each_time(tmp_path: Path, stream) -> None:
    stream.start()
    config = {
        "http": {"ready_max_age_s": READY_MAX_AGE_S},
        "source": {"reconnect": {"initial_backoff_s": 0.2, "max_backoff_s": 1.6, "jitter": 0.2,
                                 "stall_timeout_s": STALL_TIMEOUT_S}},
    }  # fmt: skip
    with Daemon(tmp_path / "edged", "--source", f"tcp://127.0.0.1:{stream.port}",
                config=config) as daemon:  # fmt: skip
        daemon.wait_ready(timeout=120)
        sub = daemon.subscriber()
        first = daemon.metrics()
        assert first.value("edged_source_connected") == 1
        reconnects = first.value("edged_source_reconnects_total")

        # 1. The stream dies: back off (growing delays), 503, reconnect when it is back.
        stream.stop()
        # Deadlines here bound a hang only: a busy machine notices and reconnects later.
        daemon.wait_status("/readyz", 503, timeout=60, reason="source disconnected")
        assert daemon.probe("/healthz")[0] == 200, "a lost source is not a dead daemon"
        assert daemon.metrics().value("edged_source_connected") == 0
        poll_until(lambda: len(retry_delays(daemon.log_text())) >= 4, 60, daemon.log_tail)
        delays = retry_delays(daemon.log_text())
        assert delays[3] > delays[0] * 2, f"no exponential backoff: {delays}"
        assert max(delays) <= 1.6 * 1.2 + 0.05, delays
        back = stream.start()
        reconnect_killed = first_frame_captured_after(daemon, sub, back, timeout=90)
        daemon.wait_status("/readyz", 200, timeout=60)
        scrape = daemon.metrics()
        assert scrape.value("edged_source_reconnects_total") == reconnects + 1
        assert scrape.value("edged_source_connected") == 1

        # 2. The stream freezes: the connection stays up, nothing arrives.
        Daemon.drain(sub)
        frozen_at = time.monotonic()
        stream.signal(signal.SIGSTOP)
        daemon.wait_for_log("source stalled", timeout=60)
        stall_detected = time.monotonic() - frozen_at
        # Capture logs the stall, then tells the supervisor: /readyz names it a moment later.
        daemon.wait_status("/readyz", 503, timeout=60, reason="source disconnected")
        stream.signal(signal.SIGCONT)  # so that kill() below is not delayed
        stream.stop()
        back = stream.start()
        reconnect_frozen = first_frame_captured_after(daemon, sub, back, timeout=90)
        daemon.wait_status("/readyz", 200, timeout=60)
        assert daemon.metrics().value("edged_source_reconnects_total") == reconnects + 2
        assert daemon.ctl("status")["stages"]["capture"]["alive"]
        assert daemon.metrics().value("edged_stage_restarts_total", stage="capture") == 0
        assert daemon.stop() == 0
    print(f"\nstream killed: reconnect {reconnect_killed:.2f} s from ffmpeg listening again to "
          f"the first frame published (retry delays {delays[:5]})")  # fmt: skip
    print(
        f"stream frozen: stall detected after {stall_detected:.2f} s "
        f"(stall_timeout_s {STALL_TIMEOUT_S}), reconnect {reconnect_frozen:.2f} s"
    )


def test_a_silent_server_is_an_open_timeout_not_a_hang(tmp_path: Path) -> None:
    """A server that accepts and never sends: opening times out, capture retries, stop works."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        config = {"source": {"reconnect": {"initial_backoff_s": 0.2, "max_backoff_s": 0.5}}}
        with Daemon(tmp_path, "--source", f"tcp://127.0.0.1:{port}", config=config) as daemon:
            daemon.wait_for_log("source unavailable (attempt 1)", timeout=60)
            assert daemon.probe("/readyz")[0] == 503
            assert daemon.probe("/healthz")[0] == 200
            assert daemon.ctl("status")["source"]["connected"] is False
            # The stop does not wait for the blocked open (10 s): the capture stage answers it
            # from its own thread. Told by the log, not a stopwatch: a stage that did not stop
            # is killed after 5 s and logged ("... stage did not stop; killing it"); the stop's
            # own bound only catches a hang.
            assert daemon.stop(timeout=60) == 0
            assert "did not stop" not in daemon.log_text(), daemon.log_tail()


def test_a_steady_stream_never_counts_as_stalled(tmp_path: Path, stream) -> None:
    """The stall timeout bounds the gap between frames, not the frame rate: a 12 fps stream
    never reconnects, over several stall timeouts."""
    stream.start()
    config = {"source": {"reconnect": {"stall_timeout_s": STALL_TIMEOUT_S}}}
    with Daemon(tmp_path / "edged", "--source", f"tcp://127.0.0.1:{stream.port}",
                config=config) as daemon:  # fmt: skip
        daemon.wait_ready(timeout=120)
        # Frames read, not published: 15 s of the stream (five stall timeouts) however slowly a
        # busy machine runs inference.
        read = daemon.metrics().total("edged_frames_total", stage="capture", outcome="ok")
        daemon.wait_metric("edged_frames_total", lambda v: v >= read + 180, timeout=120,
                           stage="capture", outcome="ok")  # fmt: skip
        assert "stalled" not in daemon.log_text()
        assert daemon.metrics().value("edged_source_reconnects_total") == 0
        assert daemon.stop() == 0
