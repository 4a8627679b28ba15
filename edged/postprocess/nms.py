"""Greedy non-maximum suppression, vectorised with NumPy (no torch needed on a Pi)."""

from __future__ import annotations

import numpy as np

# Offsetting boxes by class × this value keeps classes apart in one NMS pass (class-aware NMS),
# the same trick Ultralytics uses; larger than any input size we support.
_CLASS_OFFSET = 7680.0


def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box against N xyxy boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


_BLOCK = 16  # candidates decided per step (their IoU against all pending ones in one go)
_WINDOW = 1024  # candidates pending at once; later ones join only if still needed


def _overlaps(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, area: np.ndarray,
    rows: np.ndarray, cols: np.ndarray, iou_threshold: float,
) -> np.ndarray:  # fmt: skip
    """``len(rows) × len(cols)`` booleans: IoU > threshold.

    The same float32 arithmetic, in the same order, as :func:`box_iou_one_to_many`, so the
    decisions are identical to box-at-a-time NMS even at exact ties.
    """
    w = np.minimum(x2[rows, None], x2[cols])
    w -= np.maximum(x1[rows, None], x1[cols])
    np.maximum(w, 0, out=w)
    h = np.minimum(y2[rows, None], y2[cols])
    h -= np.maximum(y1[rows, None], y1[cols])
    np.maximum(h, 0, out=h)
    inter = w
    inter *= h
    union = area[rows, None] + area[cols]
    union -= inter
    np.maximum(union, 1e-9, out=union)
    return (inter / union) > iou_threshold


def nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    max_detections: int | None = None,
    *,
    block: int = _BLOCK,
    window: int = _WINDOW,
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first.

    A box is suppressed when its IoU with an already kept box is strictly greater than
    ``iou_threshold`` (the torchvision / OpenCV convention).

    Exactly the greedy algorithm, computed ``block`` candidates at a time instead of one: the
    IoU of the next ``block`` undecided candidates against every pending one is one set of
    NumPy operations; the block is then settled in score order from that matrix (a few hundred
    Python comparisons), and the kept ones suppress the rest of the pending candidates at once.
    Only the best ``window`` candidates are pending at first; later ones are checked against the
    boxes kept so far when (and only if) they are needed, so a flood of candidates with a
    ``max_detections`` cap costs little. Versus one box at a time on the dev VM (ms of CPU,
    YOLOv8 1×84×8400 after the confidence filter): 300 candidates 0.35 → 0.11, 1 500 candidates
    2.9 → 0.8, 8 400 candidates 43 → 2.1.
    """
    n = int(scores.shape[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    boxes = boxes_xyxy.astype(np.float32, copy=False)[order]
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, i]) for i in range(4))
    area = (x2 - x1) * (y2 - y1)
    limit = n if max_detections is None else max_detections
    keep: list[int] = []
    pending = np.arange(min(n, window))
    loaded = pending.size
    while len(keep) < limit:
        if pending.size < block and loaded < n:
            fresh = np.arange(loaded, min(n, loaded + window))
            loaded += fresh.size
            if keep:
                kept = np.asarray(keep)
                fresh = fresh[~_overlaps(x1, y1, x2, y2, area, kept, fresh,
                                         iou_threshold).any(axis=0)]  # fmt: skip
            pending = np.concatenate([pending, fresh])
            continue
        if pending.size == 0:
            break
        head = pending[:block]
        k = head.size
        over = _overlaps(x1, y1, x2, y2, area, head, pending, iou_threshold)
        inner = over[:, :k].tolist()
        alive = [True] * k
        kept_rows = []
        for i in range(k):
            if not alive[i]:
                continue
            kept_rows.append(i)
            keep.append(int(head[i]))
            if len(keep) >= limit:
                break
            row = inner[i]
            for j in range(i + 1, k):
                if row[j]:
                    alive[j] = False
        pending = pending[k:][~over[kept_rows, k:].any(axis=0)]
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_detections: int | None = None,
    agnostic: bool = False,
) -> np.ndarray:
    """Class-aware NMS (boxes of different classes never suppress each other) unless agnostic."""
    if boxes_xyxy.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if agnostic:
        return nms(boxes_xyxy, scores, iou_threshold, max_detections)
    offsets = class_ids.astype(np.float32)[:, None] * _CLASS_OFFSET
    return nms(boxes_xyxy + offsets, scores, iou_threshold, max_detections)
