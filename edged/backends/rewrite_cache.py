"""Load-time graph rewrites kept on disk by content, so a model is rewritten once, not per load.

The key is the SHA-256 of the model file together with the rewrite code itself
(:mod:`edged.backends.ort_rewrites`): a changed model or a new edged version never meets a stale
entry. An entry is the rewritten model (``<key>.onnx``) or a marker that there was nothing to
rewrite (``<key>.none``); failures are not cached. Writes are atomic (temporary file +
``os.replace``), so a killed process leaves no half-written entry; only the ``keep`` most
recently used entries stay.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edged.models import sha256_of

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """edged's cache: systemd's ``CacheDirectory=`` ($CACHE_DIRECTORY), else
    $XDG_CACHE_HOME/edged or ~/.cache/edged."""
    systemd = os.environ.get("CACHE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edged"


def default_cache_dir() -> Path:
    """Where rewritten ONNX models are kept."""
    return cache_root() / "ort-rewrites"


# Every file whose code decides what a rewrite produces.
_REWRITE_CODE = (
    "backends/ort_rewrites.py",
    "backends/head_cut.py",
    "backends/graph_edit.py",
    "postprocess/raw_heads.py",
    "backends/head_find.py",
)


@functools.cache
def _rewrite_code_digest() -> str:
    """The rewrite code's own hash, read once per process (not imported: it needs onnx)."""
    package = Path(__file__).parent.parent
    digest = hashlib.sha256()
    for part in _REWRITE_CODE:
        digest.update((package / part).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheHit:
    model: Path | None  # the rewritten model; None: the model had nothing to rewrite


class RewriteCache:
    def __init__(self, folder: Path, keep: int = 16) -> None:
        self.folder = folder
        self.keep = keep

    def key(self, model: Path) -> str:
        both = f"{_rewrite_code_digest()}:{sha256_of(model)}"
        return hashlib.sha256(both.encode()).hexdigest()

    def get(self, key: str) -> CacheHit | None:
        for path, hit in ((self._model(key), True), (self._marker(key), False)):
            if path.exists():
                with contextlib.suppress(OSError):
                    os.utime(path)  # most recently used: pruned last
                return CacheHit(path if hit else None)
        return None

    def put(self, key: str, rewritten: Path | None) -> None:
        """Remember the outcome for ``key``: the rewritten file, or None for nothing to do."""
        target = self._model(key) if rewritten is not None else self._marker(key)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if rewritten is not None:
                partial.write_bytes(rewritten.read_bytes())
            else:
                partial.touch()
            os.replace(partial, target)
        except OSError as exc:  # a read-only home, a full disk: load without caching
            log.debug("rewrite cache %s not written: %s", self.folder, exc)
            with contextlib.suppress(OSError):
                partial.unlink()
            return
        self._prune()

    def forget(self, key: str) -> None:
        for path in (self._model(key), self._marker(key)):
            with contextlib.suppress(OSError):
                path.unlink()

    def _prune(self) -> None:
        entries = [p for p in self.folder.glob("*") if p.suffix in (".onnx", ".none")]
        entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in entries[self.keep :]:
            with contextlib.suppress(OSError):
                stale.unlink()

    def _model(self, key: str) -> Path:
        return self.folder / f"{key}.onnx"

    def _marker(self, key: str) -> Path:
        return self.folder / f"{key}.none"
