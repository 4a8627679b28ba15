"""ensure_private_dir and the default runtime directory (issue 19 item 13)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edged.pipeline.runtime_dir import UnsafeRuntimeDir, daemon_runtime_dir, ensure_private_dir


def test_a_symlink_or_a_file_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "file").write_text("x")
    for name in ("link", "file"):
        with pytest.raises(UnsafeRuntimeDir, match="not a plain directory"):
            ensure_private_dir(tmp_path / name)


def test_an_open_directory_of_ours_is_made_private(tmp_path):
    path = tmp_path / "run"
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    ensure_private_dir(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_the_default_is_systemds_then_the_sessions_then_a_fresh_private_one():
    env = {"RUNTIME_DIRECTORY": "/run/edged", "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert daemon_runtime_dir(None, env) == (Path("/run/edged"), False)
    assert daemon_runtime_dir(None, {"XDG_RUNTIME_DIR": "/run/user/1000"})[0] == (
        Path("/run/user/1000/edged")
    )
    assert daemon_runtime_dir("/srv/x", env) == (Path("/srv/x"), False)
    first, temporary = daemon_runtime_dir(None, {})
    second, _ = daemon_runtime_dir(None, {})
    try:
        assert temporary and first != second  # no name another user could take first
        assert stat.S_IMODE(first.stat().st_mode) == 0o700
    finally:
        first.rmdir()
        second.rmdir()
