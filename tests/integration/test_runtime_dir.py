"""One daemon per runtime directory, and `edged ctl` that knows when none runs.

Found by hand (a second `edged run` while the service ran): the newcomer cleared the running
daemon's sockets at start-up, then failed on the HTTP port, leaving the first without a control
socket. These run real daemons and the real CLI.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.daemon import REPO_ROOT, Daemon

pytestmark = pytest.mark.integration


def _files(daemon: Daemon) -> list[str]:
    return sorted(p.name for p in daemon.runtime_dir.iterdir())


def test_a_second_daemon_on_the_same_runtime_dir_refuses_and_leaves_the_first_alone(tmp_path):
    with Daemon(tmp_path / "first", "--source", "synthetic:") as first:
        first.wait_ready()
        before = _files(first)
        assert {"control.sock", "infer.in", "edged.lock"} <= set(before)
        second = Daemon(tmp_path / "second", "--source", "synthetic:")
        at = second.argv.index("--runtime-dir")
        second.argv[at + 1] = str(first.runtime_dir)
        with second:
            assert second.proc is not None and second.proc.wait(60) == 1
            assert f"another edged is running on {first.runtime_dir} (pid {first.pid})" in (
                second.log_text()
            )
        assert _files(first) == before
        assert first.ctl("status")["ok"]
        published = first.metrics().total("edged_frames_total", stage="publish")
        first.wait_metric(
            "edged_frames_total", lambda v: v > published + 3, stage="publish", outcome="ok"
        )


def _ctl(endpoint: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "edged.cli", "ctl", "--endpoint", endpoint, "status"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.returncode, done.stderr


def test_ctl_says_at_once_when_no_daemon_runs(tmp_path):
    with Daemon(tmp_path, "--source", "synthetic:") as daemon:
        daemon.wait_ready()
        endpoint = daemon.control_endpoint
    # Stopped cleanly: its sockets are gone, and ctl does not wait out its 120 s timeout.
    assert not (daemon.runtime_dir / "control.sock").exists()
    # "not running" comes only from the check before the request (a reply timeout says "no
    # reply"), and _ctl's 60 s bound is below ctl's own 120 s timeout: not timed any closer.
    code, err = _ctl(endpoint)
    assert code == 1 and "edged is not running" in err, err
    # A socket file left by a daemon that died (nobody listening): the same answer.
    import socket

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()
    code, err = _ctl(f"ipc://{tmp_path / 'stale.sock'}")
    assert code == 1 and "edged is not running" in err, err


def test_ctl_and_subscribe_refuse_bad_arguments_in_one_line(tmp_path):
    """A malformed endpoint or key file is a usage error (2), not a traceback."""

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edged.cli", *argv], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    (tmp_path / "junk.key").write_text("not a certificate\n")
    cases = {
        ("ctl", "--endpoint", "foo", "status"): "foo: Invalid argument",
        ("subscribe", "foo"): "foo: Invalid argument",
        ("ctl", "--client-key", "x", "status"): "go together",
        ("ctl", "--endpoint", "tcp://127.0.0.1:1", "--client-key", str(tmp_path / "junk.key"),
         "--server-key", str(tmp_path / "junk.key"), "status"): "No public key found",
    }  # fmt: skip
    for argv, message in cases.items():
        done = cli(*argv)
        assert done.returncode == 2, (argv, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (argv, done.stderr)
