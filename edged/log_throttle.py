"""At most one log line per kind of repeated failure per interval, with a count of the rest.

A failure that repeats on every frame (a stage down, a model that cannot run) would otherwise
write 30 lines a second to the journal: journald's rate limit then drops the useful lines, and
the SD card wears. The first occurrence is logged at once, then one line per interval says how
many were held back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

REPEAT_LOG_INTERVAL_S = 10.0


class LogThrottle:
    def __init__(
        self, interval_s: float = REPEAT_LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, kind: str) -> str | None:
        """None to skip this line; else a suffix (empty, or how many were held back) to add."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        return f" ({held} more like it in the last {now - last:.0f} s)" if held else ""
