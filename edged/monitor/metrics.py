"""The shadow monitor's metrics, in the supervisor's registry (recorded from the helper's
reports, which reach the supervisor as typed messages)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

from edged.monitor.agreement import MEASURES, figures
from edged.monitor.judge import Update
from edged.monitor.messages import RESULTS


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.agreement = Gauge(
            "edged_shadow_agreement",
            "A camera's live variant against the reference variant, pooled over its last "
            "monitor.shadow.window checks: agreement (2·matched / all boxes), recall and "
            "precision of matched boxes (IoU ≥ 0.5, same class), their mean IoU, and the "
            "confidence shift (live − reference, mean over matched boxes).",
            ["camera", "variant", "measure"],
            registry=registry,
        )
        self.checks = Counter(
            "edged_shadow_checks",
            "Frames sent to the shadow check by result: ok / below_floor (this frame's "
            "agreement under monitor.shadow.min_agreement), skipped (over the CPU budget), "
            "dropped (helper busy, stopped or absent: the live path never waits), error.",
            ["result"],
            registry=registry,
        )
        for result in RESULTS:  # every series from the start: rate() needs a first sample
            self.checks.labels(result)
        self.cost = Gauge(
            "edged_shadow_cost_ratio",
            "The shadow helper's CPU time ÷ the live inference time, since its model loaded "
            "(bounded by monitor.shadow.max_cost_percent / 100).",
            registry=registry,
        )

    def record(self, update: Update) -> None:
        for result, count in update.counts.items():
            if count:
                self.checks.labels(result).inc(count)
        if update.replaced is not None:
            for measure in MEASURES:
                with contextlib.suppress(KeyError):  # never set (no matched box yet)
                    self.agreement.remove(update.camera, update.replaced, measure)
        if update.pooled is not None and update.variant is not None:
            for measure, value in figures(update.pooled).items():
                if value is not None:
                    self.agreement.labels(update.camera, update.variant, measure).set(value)
                else:  # no matched box in the window: no IoU or shift to speak of
                    with contextlib.suppress(KeyError):
                        self.agreement.remove(update.camera, update.variant, measure)
        if update.cost_ratio is not None:
            self.cost.set(update.cost_ratio)

    def forget(self, camera: str, variant: str | None) -> None:
        """A camera a reload removed: its agreement series go (no stale figure stays)."""
        for measure in MEASURES:
            with contextlib.suppress(KeyError):  # never set
                self.agreement.remove(camera, variant, measure)
