"""sd_notify from the real supervisor to a real AF_UNIX datagram socket (what systemd sees)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.daemon import VIDEO, Daemon, require
from tests.systemd_helpers import NotifySocketReceiver

pytestmark = pytest.mark.integration
WATCHDOG_USEC = 2_000_000
PING_S = WATCHDOG_USEC / 2 / 1e6  # the supervisor pings at half the watchdog timeout


@pytest.fixture
def short_video(tmp_path: Path) -> Path:
    """The first 60 frames (5 s at 12 fps) of the shared video, remuxed without re-encoding."""
    out = tmp_path / "short.mp4"
    result = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(require(VIDEO)), "-frames:v", "60",
         "-c", "copy", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.skip(f"ffmpeg could not cut the video: {result.stderr[-300:]}")
    return out


def test_ready_watchdog_reload_stopping(tmp_path: Path, short_video: Path):
    with NotifySocketReceiver() as notify:
        config = {"source": {"uri": str(short_video), "mode": "realtime"},
                  "http": {"ready_max_age_s": 1.5}}  # fmt: skip
        env = notify.environ(watchdog_usec=WATCHDOG_USEC)
        with Daemon(tmp_path, config=config, env=env) as daemon:
            ready = notify.wait_for(lambda m: m.get("READY") == "1", 60)
            # READY only once a frame is out: its STATUS counts published frames.
            published = int(re.search(r"(\d+) frames published", ready["STATUS"]).group(1))
            assert published >= 1
            assert ready.sender_pid == daemon.pid  # only the supervisor notifies

            # Pings flow, and never as a flood: at most one per WATCHDOG_USEC / 2 (test_sdnotify
            # pins the interval itself). Counted, not timed: every ping read after the drain was
            # sent after it (but one sent during it), and a busy machine can only send them later,
            # never closer together; how late is not judged (a deadline bounds a stop).
            notify.receive()
            opened = time.monotonic()
            notify.wait_for_count(lambda m: m.get("WATCHDOG") == "1" and m.received_at > opened,
                                  5, 60)  # fmt: skip
            window = time.monotonic() - opened
            pings = [m for m in notify.messages
                     if m.get("WATCHDOG") == "1" and m.received_at > opened]  # fmt: skip
            assert len(pings) <= window / PING_S + 2, (len(pings), window)
            assert all(p.sender_pid == daemon.pid for p in pings)

            # The 5 s clip ends: /readyz says so, but the daemon is alive and idle, so the pings
            # go on (a restart would only play the file again; source.loop does that).
            daemon.wait_status("/readyz", 503, timeout=30)
            ended_at = time.monotonic()
            notify.wait_for_count(
                lambda m: m.get("WATCHDOG") == "1" and m.received_at > ended_at, 2, 30
            )  # every stage still reports: the daemon is not hung

            daemon.proc.send_signal(signal.SIGHUP)
            reloading = notify.wait_for(lambda m: m.get("RELOADING") == "1", 30)
            assert "MONOTONIC_USEC" in reloading
            notify.wait_for(lambda m: m.get("READY") == "1" and m.received_at >
                            reloading.received_at, 60)  # fmt: skip

            assert daemon.stop() == 0
            notify.wait_for(lambda m: m.get("STOPPING") == "1", 5)


def test_no_notify_socket_means_no_notifications(tmp_path: Path):
    """Outside systemd nothing is sent and nothing breaks (the common case on a dev box)."""
    with Daemon(tmp_path, "--source", "synthetic:", env={"NOTIFY_SOCKET": ""}) as daemon:
        daemon.wait_ready()
        assert daemon.stop() == 0


def test_a_stuck_stage_stops_the_watchdog_pings(tmp_path: Path):
    """A stage process whose loop no longer turns (stopped here with SIGSTOP, as a hung driver
    call would) stops the pings, so systemd restarts the daemon; it resumes when it does."""
    with NotifySocketReceiver() as notify:
        env = notify.environ(watchdog_usec=WATCHDOG_USEC)
        with Daemon(tmp_path, "--source", "synthetic:", env=env) as daemon:
            notify.wait_for(lambda m: m.get("READY") == "1", 60)
            notify.wait_for_count(lambda m: m.get("WATCHDOG") == "1", 2, 10)
            publish = daemon.ctl("status")["stages"]["publish"]["pid"]
            os.kill(publish, signal.SIGSTOP)
            try:
                # Silent for 5 s (10 report intervals) counts as stuck: the supervisor says so
                # at the first ping it withholds. (A fixed 6 s sleep lost to a late supervisor.)
                daemon.wait_for_log("no report from the postprocess+publish process", 60)
                # Every ping sent before that line is in the socket already (a datagram is
                # queued when sent): read them, then no ping in 3 s (they come every ~1 s).
                notify.receive()
                quiet_from = time.monotonic()
                with pytest.raises(TimeoutError):
                    notify.wait_for(lambda m: m.get("WATCHDOG") == "1"
                                    and m.received_at > quiet_from, 3.0)  # fmt: skip
            finally:
                os.kill(publish, signal.SIGCONT)
            resumed_from = time.monotonic()
            notify.wait_for(lambda m: m.get("WATCHDOG") == "1" and m.received_at > resumed_from,
                            60)  # fmt: skip
            assert daemon.stop() == 0


def test_ready_without_frames_when_the_source_never_delivers(tmp_path: Path):
    """A camera absent at boot: READY comes anyway after runtime.ready_without_frames_s, STATUS
    says why no frame came, the pings flow (the daemon is alive and retrying)."""
    config = {"source": {"uri": "rtsp://127.0.0.1:9/none",
                         "reconnect": {"initial_backoff_s": 0.2, "max_backoff_s": 0.5}},
              "runtime": {"ready_without_frames_s": 3.0}}  # fmt: skip
    with NotifySocketReceiver() as notify:
        env = notify.environ(watchdog_usec=WATCHDOG_USEC)
        started = time.monotonic()  # before the daemon's own start: READY is ≥ 3 s after this
        with Daemon(tmp_path, config=config, env=env) as daemon:
            ready = notify.wait_for(lambda m: m.get("READY") == "1", 60)
            assert ready.received_at - started >= 3.0  # not at once: only after the wait
            assert "0 frames published; source:" in ready["STATUS"], ready
            notify.wait_for_count(lambda m: m.get("WATCHDOG") == "1", 2, 60)
            assert daemon.probe("/readyz")[0] == 503
            assert daemon.stop() == 0
