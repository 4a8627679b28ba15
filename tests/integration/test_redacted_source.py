"""A source URI with credentials never shows them: /readyz, STATUS, ctl status, the log
(issue 19 item 2). A real daemon retries a real rtsp:// URI whose port is closed."""

from __future__ import annotations

import pytest

from tests.daemon import Daemon, free_port, poll_until
from tests.systemd_helpers import NotifySocketReceiver

pytestmark = pytest.mark.integration
SECRET = "hunter2"


def test_a_failing_stream_with_credentials_never_shows_the_password(tmp_path):
    uri = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/stream"
    # READY (and so STATUS) at once although no frame comes: the camera-unplugged case.
    config = {"source": {"uri": uri}, "runtime": {"ready_without_frames_s": 0.5}}
    with NotifySocketReceiver() as notify, Daemon(tmp_path, config=config,
                                                  env=notify.environ()) as daemon:  # fmt: skip

        def named() -> str | None:
            status, reason = daemon.probe()
            return reason if status == 503 and "rtsp" in reason else None

        reason = poll_until(named, 60, lambda: f"/readyz never named the source: {daemon.probe()}")
        assert "rtsp://***@127.0.0.1" in reason
        status = notify.wait_for(lambda m: "rtsp" in m.get("STATUS", ""), 60)["STATUS"]
        assert "rtsp://***@127.0.0.1" in status
        ctl = daemon.ctl("status", timeout=30)
        assert SECRET not in str(ctl)
        assert daemon.stop() == 0
    assert "rtsp://***@127.0.0.1" in daemon.log_text()
    for text in (reason, status, daemon.log_text()):
        assert SECRET not in text
