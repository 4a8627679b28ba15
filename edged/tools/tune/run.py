"""The tuning run: plan the variants, measure each (speed, then accuracy), and pick."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from edged.models import find_manifest, load_manifest
from edged.tools.errors import ToolError
from edged.tools.system import NOISY_OTHER_CPU_PERCENT, state_warnings, system_state
from edged.tools.tune.cache import ResultCache
from edged.tools.tune.choice import Choice, VariantScore, choose
from edged.tools.tune.measure import (
    TuneSettings,
    detect_all,
    measure_agreement,
    measure_map,
    measure_speed,
)
from edged.tools.tune.variants import Planned, plan_variants


@dataclass(frozen=True)
class VariantOutcome:
    planned: Planned
    speed: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None  # EvalResult dict (mAP) or agreement summary
    cached: tuple[str, ...] = ()  # which of "speed", "accuracy" came from the cache

    @property
    def fps(self) -> float | None:
        return self.speed["fps"] if self.speed and self.speed.get("status") == "ok" else None

    @property
    def other_cpu_percent(self) -> float | None:
        return (self.speed or {}).get("other_cpu_percent")

    @property
    def busy(self) -> bool:
        return (self.other_cpu_percent or 0.0) > NOISY_OTHER_CPU_PERCENT


@dataclass(frozen=True)
class TuneOutcome:
    model: str
    metric: str  # "mAP50-95" or "agreement"
    budget: float
    reference: str
    variants: list[VariantOutcome]
    choice: Choice
    system: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def accuracy_points(outcome: VariantOutcome) -> float | None:
    """The variant's accuracy in points: mAP50-95 × 100, or agreement × 100."""
    a = outcome.accuracy
    if not a or "error" in a:
        return None
    if "metrics" in a:
        return round(100 * a["metrics"]["map50_95"], 3)
    return round(100 * a["agreement"], 3)


# One step of progress: (variant, what) before it starts.
Step = Callable[[str, str], None]


def run_tune(
    manifest: str,
    models_dir: Path,
    settings: TuneSettings,
    budget: float,
    *,
    reference: str = "fp32",
    only: tuple[str, ...] = (),
    result_cache: ResultCache | None = None,
    step: Step = lambda _v, _w: None,
    say: Callable[[str], None] = lambda _m: None,
) -> TuneOutcome:
    store = result_cache or ResultCache()
    manifest_path = find_manifest(manifest, models_dir)
    parsed = load_manifest(manifest_path)
    calib = Path(settings.calib) if settings.calib else None
    planned = plan_variants(manifest_path, parsed, models_dir, reference, calib, only, say)
    ref = planned[0]
    images = _agreement_images(settings)

    @cache
    def reference_detections() -> list:
        assert ref.resolved is not None
        return detect_all(ref.resolved, images, settings.threads)

    system = system_state()
    outcomes: list[VariantOutcome] = []
    for p in planned:
        if p.resolved is None:
            outcomes.append(VariantOutcome(p))
            continue
        step(p.name, "pipeline")
        speed, speed_hit = measure_speed(p.resolved, models_dir, settings, store)
        step(p.name, "accuracy")
        try:
            accuracy, acc_hit = _accuracy(p, ref, images, settings, store, reference_detections)
        except ToolError as exc:  # this variant only (a model its runtime refuses, ...)
            accuracy, acc_hit = {"error": str(exc)}, False
        hits = tuple(n for n, hit in (("speed", speed_hit), ("accuracy", acc_hit)) if hit)
        outcomes.append(VariantOutcome(p, speed, accuracy, hits))
    scores = [VariantScore(o.planned.name, o.fps, accuracy_points(o)) for o in outcomes]
    warnings = state_warnings(system)
    busy = [o.planned.name for o in outcomes if o.busy]
    if busy:
        warnings.append(
            f"the machine was busy while measuring {', '.join(busy)} (other processes used "
            f"more than {NOISY_OTHER_CPU_PERCENT:.0f}% of a CPU): their FPS are low and noisy"
        )
    return TuneOutcome(
        model=parsed.name,
        metric="mAP50-95" if settings.data else "agreement",
        budget=budget,
        reference=reference,
        variants=outcomes,
        choice=choose(scores, budget, reference),
        system=system,
        warnings=warnings,
    )


def _agreement_images(settings: TuneSettings) -> list[Path]:
    if settings.data or not settings.calib:
        return []
    from edged.tools.dataset import list_images, sample_images

    return sample_images(list_images(settings.calib), settings.max_images)


def _accuracy(
    p: Planned,
    ref: Planned,
    images: list[Path],
    settings: TuneSettings,
    store: ResultCache,
    reference_detections: Callable[[], list],
) -> tuple[dict[str, Any] | None, bool]:
    assert p.resolved is not None
    if settings.data:
        return measure_map(p.resolved, settings, store)
    if not images or ref.resolved is None:
        return None, False  # no labels, no images: the choice can only keep the reference
    if p.name == ref.name:  # the reference agrees with itself by definition
        return {
            "images": len(images),
            "agreement": 1.0,
            "recall": 1.0,
            "precision": 1.0,
            "mean_iou": 1.0,
            "confidence_shift": 0.0,
        }, False
    return measure_agreement(
        p.resolved, ref.resolved, images, settings, store, reference_detections
    )
