"""Resumable tuning: each measurement is kept under edged's cache dir, keyed by the hashes of
the model files it ran and the settings it ran with, so a rerun (or a run cut short) measures
only what changed."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edged.backends.rewrite_cache import cache_root
from edged.models import sha256_of

CACHE_VERSION = 1


def default_dir() -> Path:
    return cache_root() / "tune"


def cache_key(kind: str, files: Iterable[Path], settings: Mapping[str, Any]) -> str:
    """A key over the files' contents (not their names) and the settings (as canonical JSON)."""
    material = {
        "version": CACHE_VERSION,
        "kind": kind,
        "files": [sha256_of(Path(f)) for f in files],
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


class ResultCache:
    """JSON results by key in one folder; a corrupt entry reads as a miss."""

    def __init__(self, folder: Path | None = None, reuse: bool = True) -> None:
        self.folder = folder or default_dir()
        self.reuse = reuse  # False: measure again (and store the new results)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.reuse:
            return None
        try:
            value = json.loads(self._path(key).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: an interrupted run never leaves half an entry.
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(value, fh)
        os.replace(tmp, self._path(key))
