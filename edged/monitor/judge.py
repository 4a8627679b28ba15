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
    camera: str = ""  # the camera the sample came from
    variant: str | None = None  # the live variant the pooled figures are about
    replaced: str | None = None  # a variant whose figures no longer apply (swapped away)
    pooled: Agreement | None = None  # None: no check of this variant yet
    checks: int = 0  # checks pooled
    fell_below: bool = False  # the pooled agreement just dropped below the floor
    recovered: bool = False  # ... and just came back
    cost_ratio: float | None = None  # helper CPU ÷ live inference time, since it loaded


class CameraWindow:
    """One camera's last checks of its live variant."""

    def __init__(self, window: int) -> None:
        self.checks: deque[Agreement] = deque(maxlen=window)
        self.variant: str | None = None
        self.below = False

    @property
    def full(self) -> bool:
        return len(self.checks) == self.checks.maxlen


class ShadowJudge:
    def __init__(self, window: int, floor: float) -> None:
        self.window = window
        self.floor = floor
        self.cameras: dict[str, CameraWindow] = {}  # each camera's scene is judged on its own
        self._dropped = 0  # the tap's count when last heard

    @property
    def below(self) -> list[str]:
        """The cameras whose pooled agreement is below the floor now."""
        return [camera for camera, w in self.cameras.items() if w.below]

    def dropped_since(self, dropped: int) -> int:
        """New drops by the tap's running count (a restarted publish stage counts from 0)."""
        new = dropped - self._dropped if dropped >= self._dropped else dropped
        self._dropped = dropped
        return new

    def take(self, report: ShadowReport) -> Update:
        counts = {"dropped": self.dropped_since(report.dropped)}
        ratio = report.cpu_s / report.infer_s if report.infer_s > 0 else None
        w = self.cameras.setdefault(report.camera_id, CameraWindow(self.window))
        replaced = None
        if report.live_variant != w.variant:
            replaced, w.variant = w.variant, report.live_variant
            w.checks.clear()
            w.below = False
        base = {"camera": report.camera_id, "variant": w.variant, "replaced": replaced,
                "cost_ratio": ratio}  # fmt: skip
        if report.outcome != "checked" or report.agreement is None:
            counts[report.outcome] = 1
            pooled = total(w.checks) if w.checks else None
            return Update(counts, pooled=pooled, checks=len(w.checks), **base)
        own = report.agreement
        counts["below_floor" if own.f1 < self.floor else "ok"] = 1
        w.checks.append(own)
        pooled = total(w.checks)
        was_below = w.below
        if w.full:  # judged once the window is full (one odd frame is not a trend)
            w.below = pooled.f1 < self.floor
        return Update(counts, pooled=pooled, checks=len(w.checks),
                      fell_below=w.below and not was_below, recovered=was_below and not w.below,
                      **base)  # fmt: skip
