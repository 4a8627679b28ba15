"""`edged ctl status` per camera, over the real control socket of a real daemon, and the systemd
STATUS line and /readyz saying the same. The slow backend is the hailo_platform double (the NPU
is the hardware that is absent): inference sleeps, so the test costs little CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon import Daemon, free_port, poll_until
from tests.integration import test_cameras
from tests.integration.test_cameras import live_config, write_clip
from tests.systemd_helpers import NotifySocketReceiver

pytestmark = pytest.mark.integration
slow_hailo = test_cameras.slow_hailo  # the fixture: a HEF for the double, 120 ms per frame


def ctl_status(daemon: Daemon) -> dict[str, Any]:
    """What a user gets from `edged ctl status` (the command, its JSON on stdout)."""
    result = subprocess.run(
        [sys.executable, "-m", "edged.cli", "ctl", "--endpoint", daemon.control_endpoint,
         "status"],
        capture_output=True, text=True, timeout=120, env=daemon.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_reports_each_camera_and_the_top_level_id_only_while_one_camera_runs(
    tmp_path: Path, slow_hailo
) -> None:
    """One camera (a `cameras:` list of one, id "front"): its id and last seq at the top. A
    reload adds a camera whose source refuses connections: the top level loses `camera_id` and
    `last_seq`, each camera says its own state, and /readyz (degraded) and the STATUS line name
    the camera that is down with the same reason as its status entry."""
    hef, env = slow_hailo
    clip = write_clip(tmp_path / "front.mp4", 10)
    config = live_config({"front": clip})
    with NotifySocketReceiver() as notify:
        env = {**env, **notify.environ()}
        with Daemon(tmp_path, "--model", str(hef), model=None, config=config,
                    env=env) as daemon:  # fmt: skip
            daemon.wait_ready()
            status = poll_until(
                lambda: (s := daemon.ctl("status"))["cameras"]["front"]["frames_published"] > 0
                and s, 90, daemon.log_tail)  # fmt: skip
            assert status["camera_id"] == "front"  # the camera's id, not the default "cam0"
            assert status["last_seq"] >= 0 and list(status["cameras"]) == ["front"]
            front = status["cameras"]["front"]
            assert front["id"] == "front" and front["source"]["connected"] is True

            # A second camera whose source is down (nothing listens on its port).
            refused = {
                "uri": f"tcp://127.0.0.1:{free_port()}",
                "reconnect": {"initial_backoff_s": 0.2, "max_backoff_s": 1.0},
            }
            assert daemon.config_path is not None
            daemon.config_path.write_text(yaml.safe_dump(
                live_config({"front": clip, "down": refused})))  # fmt: skip
            reply = daemon.ctl("reload")
            assert reply["ok"] and reply["cameras"]["added"] == ["down"], reply

            def down_with_error() -> bool:
                return bool(daemon.ctl("status")["cameras"]["down"]["source"]["error"])

            poll_until(down_with_error, 90, daemon.log_tail)
            status = ctl_status(daemon)  # it keeps retrying: the error stays
            assert "camera_id" not in status and "last_seq" not in status
            assert list(status["cameras"]) == ["front", "down"]
            down = status["cameras"]["down"]
            error = down["source"]["error"]
            assert down["id"] == "down" and down["source"]["connected"] is False
            assert down["frames_published"] == 0 and down["ready"] is False
            assert down["source"]["last_error"] == error and down["source"]["reconnects"] == 0
            assert error in down["reason"]  # the per-camera verdict /readyz is made of
            front = status["cameras"]["front"]
            assert front["source"]["connected"] is True and front["source"]["error"] is None
            for camera in (front, down):
                assert {"fps", "frames_dropped", "frame_errors", "last_seq"} <= camera.keys()
            assert status["source"]["cameras"] == 2 and status["source"]["connected"] is False
            assert status["frames_published"] >= front["frames_published"]

            # /readyz: ready while front flows, degraded, naming down as its status does (a
            # poll: a neighbour's load may stall front past ready_max_age_s for a moment).
            def readyz() -> str | None:
                code, body = daemon.get("/readyz")
                reason = json.loads(body)["reason"]
                return reason if code == 200 and "degraded" in reason else None

            reason = poll_until(readyz, 60, daemon.log_tail)
            assert f"down: {down['reason']}" in reason, (reason, down["reason"])
            # STATUS: the count of cameras connected, and down with its source error.
            line = f"; 1/2 cameras connected; down: {error}"
            notify.wait_for(lambda m: m.get("STATUS", "").endswith(line), 60)
            assert daemon.stop() == 0
