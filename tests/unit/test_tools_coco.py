"""The COCO evaluator on constructed cases whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edged.tools.coco import ImageDetections, coco_metrics

pytest.importorskip("pycocotools", reason="pycocotools not installed (the [tools] extra)")


def _image(gt: list[list[float]], gt_cls: list[int], det: list[list[float]], cls: list[int],
           scores: list[float] | None = None) -> ImageDetections:  # fmt: skip
    return ImageDetections(
        width=640,
        height=480,
        gt_boxes=np.asarray(gt, np.float32).reshape(-1, 4),
        gt_class_ids=np.asarray(gt_cls, np.int64),
        boxes=np.asarray(det, np.float32).reshape(-1, 4),
        scores=np.asarray(scores if scores is not None else [0.9] * len(det), np.float32),
        class_ids=np.asarray(cls, np.int64),
    )


def test_perfect_predictions_score_one() -> None:
    boxes = [[10, 20, 110, 220], [300, 40, 420, 200], [50, 300, 90, 360]]
    images = [_image(boxes, [0, 1, 2], boxes, [0, 1, 2]), _image(boxes[:1], [1], boxes[:1], [1])]
    m = coco_metrics(images, num_classes=3)
    assert m.map50 == pytest.approx(1.0)
    assert m.map50_95 == pytest.approx(1.0)
    assert m.precision == pytest.approx(1.0)
    assert m.recall == pytest.approx(1.0)
    assert m.num_labels == 4 and m.num_detections == 4
    assert m.per_class_ap50_95 == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0})


def test_shifted_box_matches_below_its_iou_only() -> None:
    # Shifting a 100×100 box by 16 px gives IoU 84/116 = 0.724: a match at the IoU thresholds
    # 0.50, 0.55, 0.60, 0.65, 0.70 and a miss at 0.75 … 0.95, so AP50-95 is exactly 5/10.
    gt = [[100, 100, 200, 200]]
    det = [[116, 100, 216, 200]]
    m = coco_metrics([_image(gt, [0], det, [0])], num_classes=1)
    assert m.map50 == pytest.approx(1.0)
    assert m.map50_95 == pytest.approx(0.5)


def test_half_the_objects_found() -> None:
    # Recall reaches 0.5 at precision 1: 51 of COCO's 101 recall points.
    gt = [[0, 0, 50, 50], [100, 100, 150, 150]]
    m = coco_metrics([_image(gt, [0, 0], gt[:1], [0])], num_classes=1)
    assert m.map50 == pytest.approx(51 / 101)
    assert m.recall == pytest.approx(0.5, abs=0.01)


def test_wrong_class_and_no_detections_score_zero() -> None:
    gt = [[0, 0, 50, 50]]
    assert coco_metrics([_image(gt, [0], gt, [1])], num_classes=2).map50 == 0.0
    empty = coco_metrics([_image(gt, [0], [], [])], num_classes=2)
    assert (empty.map50, empty.map50_95, empty.num_detections) == (0.0, 0.0, 0)


def test_false_positive_ranked_above_the_true_one_halves_precision() -> None:
    gt = [[0, 0, 50, 50]]
    det = [[300, 300, 350, 350], [0, 0, 50, 50]]
    m = coco_metrics([_image(gt, [0], det, [0, 0], scores=[0.9, 0.5])], num_classes=1)
    # Precision is 1/2 at recall 1 after the false positive, and the envelope keeps it at 0.5.
    assert m.map50 == pytest.approx(0.5)
