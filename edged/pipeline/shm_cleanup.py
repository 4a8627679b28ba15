"""Remove shared-memory segments left by an edged supervisor that died without cleaning up."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
SHM_DIR = Path("/dev/shm")


def owner_pid(name: str, prefix: str) -> int | None:
    """``edged_<pid>_<tag>_<ring>`` → pid."""
    parts = name.split("_")
    if len(parts) < 3 or parts[0] != prefix or not parts[1].isdigit():
        return None
    return int(parts[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_segments(prefix: str, shm_dir: Path = SHM_DIR) -> list[str]:
    """Unlink our segments whose owning supervisor is gone; returns their names."""
    removed = []
    if not shm_dir.is_dir():
        return removed
    for entry in shm_dir.iterdir():
        pid = owner_pid(entry.name, prefix)
        if pid is None or pid_alive(pid) or entry.stat().st_uid != os.getuid():
            continue
        try:
            entry.unlink()
            removed.append(entry.name)
        except OSError:
            continue
    if removed:
        log.warning("removed %d stale shared-memory segment(s): %s", len(removed),
                    ", ".join(removed))  # fmt: skip
    return removed
