"""The agreement measure shared by edged tune and the live monitor: pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from edged.monitor.agreement import MEASURES, Agreement, compare, figures, total


def _boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def test_agreement_matches_same_class_boxes_at_iou_half():
    ref = _boxes((0, 0, 10, 10), (20, 20, 30, 30), (50, 50, 60, 60))
    ref_cls, ref_sc = np.array([0, 1, 2]), np.array([0.9, 0.8, 0.7])
    mine = _boxes((0, 0, 10, 11), (20, 20, 30, 30), (50, 50, 70, 70), (80, 80, 90, 90))
    cls, sc = np.array([0, 5, 2, 3]), np.array([0.8, 0.8, 0.7, 0.3])
    # box 1: other class; box 2: IoU 0.25; only box 0 matches (IoU 10/11).
    a = compare(ref, ref_cls, ref_sc, mine, cls, sc)
    assert (a.reference_boxes, a.variant_boxes, a.matched) == (3, 4, 1)
    assert a.recall == pytest.approx(1 / 3) and a.precision == pytest.approx(1 / 4)
    assert a.f1 == pytest.approx(2 / 7)
    assert a.mean_iou == pytest.approx(10 / 11, rel=1e-6)
    assert a.confidence_shift == pytest.approx(-0.1)


def test_identical_detections_agree_fully_and_nothing_seen_agrees_too():
    ref = _boxes((0, 0, 10, 10), (5, 5, 15, 15))
    same = compare(ref, np.array([0, 0]), np.array([0.5, 0.6]), ref, np.array([0, 0]),
                   np.array([0.5, 0.6]))  # fmt: skip
    assert same.f1 == 1.0 and same.matched == 2 and same.mean_iou == pytest.approx(1.0)
    empty = compare(_boxes(), np.array([]), np.array([]), _boxes(), np.array([]), np.array([]))
    assert empty.f1 == 1.0 and empty.mean_iou is None
    assert total([same, empty, Agreement(2, 0, 0)]).recall == pytest.approx(0.5)


def test_figures_name_every_measure_and_leave_unmatched_ones_empty():
    a = Agreement(reference_boxes=4, variant_boxes=2, matched=2, iou_sum=1.8,
                  confidence_shift_sum=-0.1)  # fmt: skip
    assert tuple(figures(a)) == MEASURES
    assert figures(a) == {"agreement": 0.6667, "recall": 0.5, "precision": 1.0,
                          "mean_iou": 0.9, "confidence_shift": -0.05}  # fmt: skip
    none = figures(Agreement(reference_boxes=1))
    assert none["recall"] == 0.0 and none["mean_iou"] is None and none["confidence_shift"] is None
