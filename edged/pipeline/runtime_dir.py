"""The runtime directory (sockets, the lock, the preview's ipc socket): where, and whose.

Under systemd it is ``$RUNTIME_DIRECTORY``; in a login session ``$XDG_RUNTIME_DIR/edged``;
elsewhere a fresh private ``mkdtemp`` (``/tmp/edged-<uid>-XXXXXXXX``). A fixed name in a
world-writable ``/tmp`` would let another local user create it first and so read or replace
edged's sockets; a directory that belongs to someone else is refused, whichever way it was
chosen.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

CONTROL_SOCKET = "control.sock"


class UnsafeRuntimeDir(OSError):
    """A runtime directory edged must not use: not a directory, or not this user's."""


def standard_runtime_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """systemd's or the login session's directory; None when neither is set."""
    env = os.environ if environ is None else environ
    if env.get("RUNTIME_DIRECTORY"):
        return Path(env["RUNTIME_DIRECTORY"].split(":")[0])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "edged"
    return None


def temp_prefix() -> str:
    return f"edged-{os.geteuid()}-"


def daemon_runtime_dir(
    configured: str | None, environ: Mapping[str, str] | None = None
) -> tuple[Path, bool]:
    """(the daemon's directory, whether it is a temporary one of its own to remove at exit).

    Without a configured or standard one, a new private directory: mkdtemp makes it 0700
    under a name nobody can create ahead of it."""
    if configured:
        return Path(configured), False
    standard = standard_runtime_dir(environ)
    if standard is not None:
        return standard, False
    return Path(tempfile.mkdtemp(prefix=temp_prefix())), True


def running_dirs(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where `edged ctl` looks for a daemon started without a configured directory: the
    standard one, else this user's temporary ones that hold a control socket."""
    standard = standard_runtime_dir(environ)
    if standard is not None:
        return [standard]
    found = []
    for path in sorted(Path(tempfile.gettempdir()).glob(temp_prefix() + "*")):
        try:
            st = path.lstat()
        except OSError:
            continue
        mine = stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
        if mine and (path / CONTROL_SOCKET).exists():
            found.append(path)
    return found


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) or check the one there: a directory of this user's, never a
    symbolic link; then make it 0700. Raises :class:`UnsafeRuntimeDir` saying what is wrong."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # checked below, whatever is there
        path.mkdir(mode=0o700)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeRuntimeDir(
            f"runtime directory {path} is not a plain directory (a symbolic link or a file); "
            "remove it or set runtime.runtime_dir (--runtime-dir)"
        )
    if st.st_uid != os.geteuid():
        raise UnsafeRuntimeDir(
            f"runtime directory {path} belongs to {_user(st.st_uid)}, not to "
            f"{_user(os.geteuid())}: another user could read or replace edged's sockets there; "
            "remove it or set runtime.runtime_dir (--runtime-dir) to a directory of your own"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
