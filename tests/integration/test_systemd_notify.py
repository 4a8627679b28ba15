"""sd_notify from the real supervisor to a real AF_UNIX datagram socket (what systemd sees)."""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.daemon import VIDEO, Daemon, require
from tests.systemd_helpers import NotifySocketReceiver

pytestmark = pytest.mark.integration
WATCHDOG_USEC = 2_000_000  # pings expected every ~1 s


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

            pings = notify.wait_for_count(lambda m: m.get("WATCHDOG") == "1", 3, 10)
            gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(pings)]
            assert all(0.5 <= g <= 2.0 for g in gaps), gaps
            assert all(p.sender_pid == daemon.pid for p in pings)

            # The 5 s clip ends: frames stop, so do the pings (systemd would restart us).
            daemon.wait_status("/readyz", 503, timeout=30)
            notify.receive(timeout=1.5)
            quiet_from = notify.messages[-1].received_at if notify.messages else 0
            notify.receive(timeout=3.0)
            late = [m for m in notify.messages if m.get("WATCHDOG") == "1"
                    and m.received_at > quiet_from]  # fmt: skip
            assert late == [], "watchdog pings continued after frames stopped"

            daemon.proc.send_signal(signal.SIGHUP)
            reloading = notify.wait_for(lambda m: m.get("RELOADING") == "1", 10)
            assert "MONOTONIC_USEC" in reloading
            notify.wait_for(lambda m: m.get("READY") == "1" and m.received_at >
                            reloading.received_at, 10)  # fmt: skip

            assert daemon.stop() == 0
            notify.wait_for(lambda m: m.get("STOPPING") == "1", 5)


def test_no_notify_socket_means_no_notifications(tmp_path: Path):
    """Outside systemd nothing is sent and nothing breaks (the common case on a dev box)."""
    with Daemon(tmp_path, "--source", "synthetic:", env={"NOTIFY_SOCKET": ""}) as daemon:
        daemon.wait_ready()
        assert daemon.stop() == 0
