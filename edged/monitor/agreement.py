"""Agreement of a variant's detections with the reference's on the same image, without labels:
boxes matched greedily (highest IoU first) at IoU ≥ 0.5 and the same class.

Pure functions shared by ``edged tune`` (offline, on calibration images) and the live shadow
monitor (on frames the daemon published), so both report the same figures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MATCH_IOU = 0.5


@dataclass(frozen=True)
class Agreement:
    """Counts over one or more images; the rates follow from them."""

    reference_boxes: int = 0
    variant_boxes: int = 0
    matched: int = 0
    iou_sum: float = 0.0
    # Sum over matched pairs of the variant's confidence minus the reference's.
    confidence_shift_sum: float = 0.0

    @property
    def recall(self) -> float:
        """Share of the reference's boxes the variant found too (1.0 when both saw nothing)."""
        return self.matched / self.reference_boxes if self.reference_boxes else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.variant_boxes if self.variant_boxes else 1.0

    @property
    def f1(self) -> float:
        """The agreement score: 2·matched / (reference + variant boxes); 1.0 = identical sets."""
        total = self.reference_boxes + self.variant_boxes
        return 2 * self.matched / total if total else 1.0

    @property
    def mean_iou(self) -> float | None:
        return self.iou_sum / self.matched if self.matched else None

    @property
    def confidence_shift(self) -> float | None:
        return self.confidence_shift_sum / self.matched if self.matched else None

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(
            self.reference_boxes + other.reference_boxes,
            self.variant_boxes + other.variant_boxes,
            self.matched + other.matched,
            self.iou_sum + other.iou_sum,
            self.confidence_shift_sum + other.confidence_shift_sum,
        )


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in ``a`` (N×4) with every one in ``b`` (M×4): N×M."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def compare(
    ref_boxes: np.ndarray,
    ref_classes: np.ndarray,
    ref_scores: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    min_iou: float = MATCH_IOU,
) -> Agreement:
    """One image: each reference box matched to at most one variant box of its class."""
    iou = pairwise_iou(ref_boxes, boxes)
    same = np.asarray(ref_classes).reshape(-1, 1) == np.asarray(classes).reshape(1, -1)
    iou = np.where(same & (iou >= min_iou), iou, 0.0)
    matched, iou_sum, shift = 0, 0.0, 0.0
    # Greedy on the highest IoU left: the assignment a human would draw on the image.
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] <= 0:
            break
        matched += 1
        iou_sum += float(iou[i, j])
        shift += float(scores[j]) - float(ref_scores[i])
        iou[i, :] = 0.0
        iou[:, j] = 0.0
    return Agreement(len(ref_classes), len(classes), matched, iou_sum, shift)


def total(agreements: Iterable[Agreement]) -> Agreement:
    out = Agreement()
    for a in agreements:
        out = out + a
    return out


# The figures both tune's report and the monitor's metrics give, by name.
MEASURES = ("agreement", "recall", "precision", "mean_iou", "confidence_shift")


def figures(a: Agreement, digits: int = 4) -> dict[str, float | None]:
    """``agreement`` (F1), ``recall``, ``precision``, ``mean_iou``, ``confidence_shift``
    (variant − reference, mean over matched pairs), rounded; None where nothing matched."""
    values = (a.f1, a.recall, a.precision, a.mean_iou, a.confidence_shift)
    pairs = zip(MEASURES, values, strict=True)
    return {name: None if v is None else round(v, digits) for name, v in pairs}
