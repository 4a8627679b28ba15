"""Block NMS is exactly greedy NMS: same boxes, same order, ties and caps included."""

from __future__ import annotations

import numpy as np
import pytest

from edged.postprocess.nms import box_iou_one_to_many, nms


def greedy_reference(boxes, scores, iou_threshold, max_detections=None):
    """One box at a time, the textbook way (edged's implementation before block NMS)."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes.astype(np.float32, copy=False)
    keep: list[int] = []
    limit = len(order) if max_detections is None else max_detections
    while order.size and len(keep) < limit:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        order = rest[box_iou_one_to_many(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def random_case(rng, n, ties):
    xy = rng.uniform(0, 500, (n, 2))
    wh = rng.uniform(2, 200, (n, 2))
    boxes = np.hstack([xy, xy + wh]).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    if ties:  # equal scores and integer (often identical) geometry
        boxes = np.round(boxes / 20) * 20
        scores = np.round(scores, 1)
    return boxes, scores


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("block", "window"), [(1, 1024), (16, 1024), (7, 50), (64, 16)])
def test_block_nms_equals_greedy(seed, ties, block, window):
    rng = np.random.default_rng(seed)
    for n in (0, 1, 2, 15, 16, 17, 180, 700):
        boxes, scores = random_case(rng, n, ties)
        for thr in (0.3, 0.45, 0.7):
            for cap in (None, 1, 5, 300):
                ours = nms(boxes, scores, thr, cap, block=block, window=window)
                ref = greedy_reference(boxes, scores, thr, cap)
                np.testing.assert_array_equal(ours, ref)
                assert ours.dtype == np.int64


def test_identical_boxes_keep_the_first_of_equal_scores():
    boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (40, 1))
    scores = np.full(40, 0.5, np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert nms(boxes, scores, 1.0).tolist() == list(range(40))  # IoU 1 is not > 1
