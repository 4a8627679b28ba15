"""Recent per-stage latency (mean over the last few seconds) from the metrics histograms.

The supervisor already records every published frame's stage timings in histograms; the
preview page only needs their recent means, computed here from how ``_sum`` and ``_count``
moved since an earlier reading. No supervisor code involved.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from edged.pipeline.stage_names import STAGE_ORDER

STAGE_HISTOGRAM = "edged_stage_latency_seconds"
E2E_HISTOGRAM = "edged_end_to_end_latency_seconds"
STAGES = STAGE_ORDER

Totals = dict[str, tuple[float, float]]  # stage (or "end_to_end") -> (sum seconds, count)


def read_totals(registry: CollectorRegistry) -> Totals:
    names = [
        f"{h}_{suffix}" for h in (STAGE_HISTOGRAM, E2E_HISTOGRAM) for suffix in ("sum", "count")
    ]
    totals: dict[str, list[float]] = {}
    for metric in registry.restricted_registry(names).collect():
        for sample in metric.samples:
            if sample.name.startswith(STAGE_HISTOGRAM):
                key = sample.labels.get("stage", "")
            elif sample.name.startswith(E2E_HISTOGRAM):
                key = "end_to_end"
            else:
                continue
            pair = totals.setdefault(key, [0.0, 0.0])
            pair[0 if sample.name.endswith("_sum") else 1] += sample.value  # every camera
    return {k: (v[0], v[1]) for k, v in totals.items()}


class LatencyWindow:
    """Mean latency per stage in ms over roughly the last ``window_s`` seconds."""

    def __init__(
        self,
        registry: CollectorRegistry,
        window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.window_s = window_s
        self.clock = clock
        self._history: deque[tuple[float, Totals]] = deque()
        self._lock = threading.Lock()  # several HTTP threads may ask at once

    def read(self) -> dict[str, float | None]:
        now = self.clock()
        totals = read_totals(self.registry)
        with self._lock:
            self._history.append((now, totals))
            while len(self._history) > 1 and now - self._history[1][0] >= self.window_s:
                self._history.popleft()
            _, old = self._history[0]
        result: dict[str, float | None] = {}
        for key in (*STAGES, "end_to_end"):
            total, count = totals.get(key, (0.0, 0.0))
            old_total, old_count = old.get(key, (0.0, 0.0)) if old is not totals else (0.0, 0.0)
            if count - old_count > 0:  # frames in the window: their mean
                result[key] = round((total - old_total) / (count - old_count) * 1000, 2)
            else:  # nothing new (idle): the last known mean rather than a blank
                result[key] = round(total / count * 1000, 2) if count else None
        return result
