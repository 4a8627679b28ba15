"""The pick: the fastest variant whose accuracy loss against the reference (FP32) is within the
budget. A pure function over measured results, so its rules are tested with constructed ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Budgets are points (mAP50-95 × 100 or agreement %); a loss equal to the budget is within it,
# even when float arithmetic puts it a hair above.
_EPSILON = 1e-9


@dataclass(frozen=True)
class VariantScore:
    """What the choice needs of one variant's measurements."""

    variant: str
    fps: float | None  # the daemon's pipeline FPS; None: not measured (failed, skipped)
    accuracy: float | None  # points (mAP50-95 × 100, or agreement with FP32 × 100); None: unknown


@dataclass(frozen=True)
class Choice:
    variant: str | None
    reason: str
    # variant → loss in points against the reference (None: no accuracy to compare)
    losses: dict[str, float | None]


def losses_against(scores: Sequence[VariantScore], reference: str) -> dict[str, float | None]:
    ref = next((s for s in scores if s.variant == reference), None)
    base = ref.accuracy if ref is not None else None
    return {
        s.variant: None if base is None or s.accuracy is None else round(base - s.accuracy, 4)
        for s in scores
    }


def choose(scores: Sequence[VariantScore], budget: float, reference: str = "fp32") -> Choice:
    """The fastest variant losing at most ``budget`` points against ``reference``.

    A variant without accuracy is never picked (its loss is unknown). Equal FPS: the smaller
    loss wins, then the reference, then the name (so the pick is deterministic). When no other
    variant is within budget the reference is the pick; without a measured reference, none.
    """
    if budget < 0:
        raise ValueError(f"budget must be ≥ 0 points, got {budget}")
    losses = losses_against(scores, reference)
    ref = next((s for s in scores if s.variant == reference), None)
    if ref is None or ref.fps is None:
        return Choice(None, f"the reference variant {reference!r} was not measured", losses)
    eligible = [
        s
        for s in scores
        if s.fps is not None
        and (
            s.variant == reference
            or (losses[s.variant] is not None and losses[s.variant] <= budget + _EPSILON)
        )
    ]
    best = min(
        eligible,
        key=lambda s: (
            -(s.fps or 0.0),
            losses[s.variant] or 0.0,
            s.variant != reference,
            s.variant,
        ),
    )
    if best.variant == reference:
        others = [s.variant for s in scores if s.variant != reference and s.fps is not None]
        if not others:
            return Choice(reference, "the only variant measured", losses)
        faster = [s for s in scores if s.fps is not None and s.fps > ref.fps]
        if not faster:
            return Choice(reference, "no other variant is faster", losses)
        return Choice(reference, f"every faster variant loses more than {budget:g} points", losses)
    loss = losses[best.variant] or 0.0
    change = f"loses {loss:.2f} points" if loss >= 0 else f"gains {-loss:.2f} points"
    return Choice(
        best.variant,
        f"fastest within {budget:g} points: {best.fps:.1f} FPS vs {ref.fps:.1f} "
        f"({best.fps / ref.fps:.2f}×), {change}",
        losses,
    )
