"""Track IDs: small increasing integers per camera that are never handed out twice in a run.

The postprocess process may be restarted by the supervisor; a plain counter would then start
over and hand an old ID to a new object. IDs are reserved in blocks, the end of the last block
kept in a file in the private runtime directory, so a restarted process starts past anything
its predecessor could have published (at the cost of a skipped range).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

BLOCK = 1024


class IdAllocator:
    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._next = 1
        self._reserved = 0  # IDs below this are covered by the file
        if path is not None:
            with contextlib.suppress(OSError, ValueError):  # no file yet: start at 1
                self._next = max(1, int(path.read_text().strip()))
        self._reserved = self._next

    def next(self) -> int:
        if self._next >= self._reserved:
            self._reserve(self._next + BLOCK)
        value = self._next
        self._next += 1
        return value

    def _reserve(self, end: int) -> None:
        self._reserved = end
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        try:
            tmp.write_text(f"{end}\n")
            os.replace(tmp, self._path)  # atomic: a crash leaves the old or the new block end
        except OSError as exc:  # IDs still go on; only a restart could then repeat some
            log.warning("cannot keep track IDs in %s (%s); a restart may reuse IDs", tmp, exc)
            self._path = None
