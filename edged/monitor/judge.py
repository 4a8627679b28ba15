"""The supervisor's reading of the helper's reports: pure, no sockets, no metrics.

A check's own verdict (``ok`` / ``below_floor``) judges its one frame; the alarm (WARNING, STATUS
note) follows the agreement pooled over the last ``window`` checks (counts summed, so frames
without boxes weigh nothing), judged once the window is full: one odd frame does not raise it.
A change of the live variant (a hot swap) starts the window over.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from edged.monitor.agreement import Agreement, total
from edged.monitor.messages import ShadowReport


@dataclass(frozen=True)
class Update:
    counts: dict[str, int] = field(default_factory=dict)  # checks_total increments by result
    variant: str | None = None  # the live variant the pooled figures are about
    replaced: str | None = None  # a variant whose figures no longer apply (swapped away)
    pooled: Agreement | None = None  # None: no check of this variant yet
    fell_below: bool = False  # the pooled agreement just dropped below the floor
    recovered: bool = False  # ... and just came back
    cost_ratio: float | None = None  # helper CPU ÷ live inference time, since it loaded


class ShadowJudge:
    def __init__(self, window: int, floor: float) -> None:
        self.floor = floor
        self.checks: deque[Agreement] = deque(maxlen=window)
        self.variant: str | None = None
        self.below = False
        self._dropped = 0  # the tap's count when last heard

    def dropped_since(self, dropped: int) -> int:
        """New drops by the tap's running count (a restarted publish stage counts from 0)."""
        new = dropped - self._dropped if dropped >= self._dropped else dropped
        self._dropped = dropped
        return new

    def take(self, report: ShadowReport) -> Update:
        counts = {"dropped": self.dropped_since(report.dropped)}
        ratio = report.cpu_s / report.infer_s if report.infer_s > 0 else None
        replaced = None
        if report.live_variant != self.variant:
            replaced, self.variant = self.variant, report.live_variant
            self.checks.clear()
            self.below = False
        if report.outcome != "checked" or report.agreement is None:
            counts[report.outcome] = 1
            pooled = total(self.checks) if self.checks else None
            return Update(counts, self.variant, replaced, pooled, cost_ratio=ratio)
        own = report.agreement
        counts["below_floor" if own.f1 < self.floor else "ok"] = 1
        self.checks.append(own)
        pooled = total(self.checks)
        was_below = self.below
        # Judged once the window is full (one odd frame is not a trend); then on every check.
        if len(self.checks) == self.checks.maxlen:
            self.below = pooled.f1 < self.floor
        return Update(counts, self.variant, replaced, pooled, self.below and not was_below,
                      was_below and not self.below, ratio)  # fmt: skip
