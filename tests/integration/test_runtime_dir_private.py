"""Outside systemd and a login session the runtime directory is a private mkdtemp, and a
directory of another user's is refused (issue 19 item 13). Real daemons, the real CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import REPO_ROOT, Daemon

pytestmark = pytest.mark.integration


def _foreign_dir(tmp_path: Path) -> tuple[Path, int]:
    """A world-writable directory that belongs to another user (what a local attacker would
    create ahead of edged), and its owner's uid."""
    if os.geteuid() != 0:
        pytest.skip("making a directory of another user's needs root")
    path = tmp_path / "theirs"
    path.mkdir()
    os.chown(path, 65534, 65534)
    path.chmod(0o777)
    return path, 65534


def _without_runtime_dir(daemon: Daemon) -> None:
    at = daemon.argv.index("--runtime-dir")
    del daemon.argv[at : at + 2]


def test_a_runtime_dir_of_another_user_is_refused_with_a_clear_message(tmp_path):
    theirs, uid = _foreign_dir(tmp_path)
    daemon = Daemon(tmp_path, "--source", "synthetic:")
    daemon.argv[daemon.argv.index("--runtime-dir") + 1] = str(theirs)
    with daemon:
        assert daemon.proc is not None and daemon.proc.wait(60) == 1
        assert f"runtime directory {theirs} belongs to" in daemon.log_text()
        assert f"uid {uid}" in daemon.log_text()
    assert list(theirs.iterdir()) == []  # nothing created in it


def test_without_a_standard_dir_the_daemon_makes_a_private_one_that_ctl_finds(tmp_path):
    tmp = tmp_path / "tmp"  # the daemon's and ctl's TMPDIR: what /tmp is to them
    tmp.mkdir()
    env = {"TMPDIR": str(tmp), "XDG_RUNTIME_DIR": "", "RUNTIME_DIRECTORY": ""}
    # The fixed name the old default used, made first by someone else: never used.
    squatted = tmp / f"edged-{os.geteuid()}"
    squatted.mkdir(mode=0o777)
    daemon = Daemon(tmp_path, "--source", "synthetic:", env=env)
    _without_runtime_dir(daemon)
    with daemon:
        daemon.wait_ready()
        made = list(tmp.glob(f"edged-{os.geteuid()}-*"))
        assert len(made) == 1, list(tmp.iterdir())
        st = made[0].stat()
        assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700
        assert (made[0] / "control.sock").exists()
        ctl = [sys.executable, "-m", "edged.cli", "ctl", "status"]
        done = subprocess.run(ctl, cwd=REPO_ROOT, env=daemon.env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["ok"]
        assert daemon.stop() == 0
    assert list(squatted.iterdir()) == []
    assert not made[0].exists()  # removed at exit: nothing left behind in /tmp
