"""NMS against OpenCV's independent implementation on random boxes."""

import cv2
import numpy as np
import pytest

from edged.postprocess.nms import batched_nms, nms


def random_boxes(rng, n, size=640.0):
    xy = rng.uniform(0, size * 0.8, (n, 2))
    wh = rng.uniform(4, size * 0.3, (n, 2))
    return np.hstack([xy, xy + wh]).astype(np.float32)


def opencv_batched(boxes, scores, classes, iou):
    xywh = [(float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])) for b in boxes]
    keep = cv2.dnn.NMSBoxesBatched(xywh, scores.tolist(), classes.tolist(), 0.0, iou)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("iou", [0.3, 0.5, 0.7])
def test_class_aware_nms_matches_opencv(seed, iou):
    rng = np.random.default_rng(seed)
    n = 300
    boxes = random_boxes(rng, n)
    scores = rng.uniform(0.01, 1.0, n).astype(np.float32)
    classes = rng.integers(0, 5, n)
    ours = batched_nms(boxes, scores, classes, iou)
    ref = opencv_batched(boxes, scores, classes, iou)
    assert sorted(ours.tolist()) == sorted(ref.tolist())
    # Ours comes highest score first.
    assert (np.diff(scores[ours]) <= 0).all()


def test_agnostic_nms_suppresses_across_classes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    classes = np.array([0, 1])
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, classes, 0.5, agnostic=True).tolist() == [0]


def test_max_detections_caps_output():
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 100, size=100000)  # spread out: nothing overlaps
    scores = rng.uniform(size=100).astype(np.float32)
    keep = nms(boxes, scores, 0.5, max_detections=7)
    assert len(keep) == 7
    assert set(keep.tolist()) == set(np.argsort(-scores)[:7].tolist())


def test_empty_input():
    empty = np.zeros((0, 4), np.float32)
    assert batched_nms(empty, np.zeros(0, np.float32), np.zeros(0, int), 0.5).size == 0
