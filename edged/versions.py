"""Installed package versions, read and compared one way (doctor's checks, the backends)."""

from __future__ import annotations

import re
from types import ModuleType


def parse_version(text: str) -> tuple[int, ...] | None:
    """``"4.18.0"`` → ``(4, 18, 0)`` (``"4.20"`` → ``(4, 20, 0)``, ``"4.21.0-1"`` →
    ``(4, 21, 0)``); ``None`` when no version number is found."""
    match = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not match:
        return None
    return tuple(int(part) for part in match.groups(default="0"))


def installed_version(module: ModuleType | None, dist: str) -> str | None:
    """A module's ``__version__``, else the installed distribution ``dist``'s; ``None`` when
    neither says (apt-installed bindings may have no distribution metadata)."""
    version = getattr(module, "__version__", None) if module is not None else None
    if version:
        return str(version)
    try:
        from importlib.metadata import version as dist_version

        return dist_version(dist)
    except Exception:  # PackageNotFoundError, or metadata a broken install cannot read
        return None
