"""The daemon on a Pi camera, through the picamera2/libcamera test doubles (no camera here).

Everything but picamera2 is real: the capture stage opens ``picamera2:0``, reads frames through
capture_array jobs, and the pipeline publishes them; a camera another process holds is reported
and retried without leaking descriptors.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.daemon import Daemon, poll_until
from tests.fakes.fixtures import fake_env

pytestmark = pytest.mark.integration


def _capture(daemon: Daemon) -> psutil.Process:
    pid = daemon.ctl("status")["stages"]["capture"]["pid"]
    return psutil.Process(pid)


def test_a_pi_camera_feeds_the_pipeline(tmp_path: Path):
    with Daemon(tmp_path, "--source", "picamera2:", env=fake_env()) as daemon:
        daemon.wait_ready()
        daemon.wait_published(20)
        status = daemon.ctl("status")
        source = status["source"]
        assert (source["kind"], source["width"], source["height"]) == ("picamera2", 1280, 720)
        assert source["paced_by"] == "source" and source["mode"] == "live"
        assert daemon.stop() == 0


def test_a_camera_held_elsewhere_is_retried_and_said(tmp_path: Path):
    retry_fast = {"initial_backoff_s": 0.2, "max_backoff_s": 0.5}
    config = {"source": {"uri": "picamera2:0", "reconnect": retry_fast}}
    env = fake_env(EDGED_FAKE_PICAMERA2_BUSY="1")
    with Daemon(tmp_path, config=config, env=env) as daemon:
        # /readyz says why it is not ready, in words a Pi owner can act on.
        reason = poll_until(lambda: (r := daemon.probe("/readyz"))[0] == 503
                            and "in use by another process" in r[1] and r[1], 60,
                            daemon.log_tail)  # fmt: skip
        assert "source disconnected" in reason or "no frame published" in reason, reason
        capture = poll_until(lambda: _capture(daemon), 30, daemon.log_tail)
        # Retries every half second; descriptors stay flat across them.
        poll_until(lambda: daemon.log_text().count("in use by another process") >= 3, 30,
                   daemon.log_tail)  # fmt: skip
        before = capture.num_fds()
        seen = daemon.log_text().count("in use by another process")
        poll_until(lambda: daemon.log_text().count("in use by another process") >= seen + 6, 30,
                   daemon.log_tail)  # fmt: skip
        assert capture.num_fds() <= before
        assert daemon.stop() == 0
