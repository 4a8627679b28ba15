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


def nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    max_detections: int | None = None,
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first.

    A box is suppressed when its IoU with an already kept box is strictly greater than
    ``iou_threshold`` (the torchvision / OpenCV convention).
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes_xyxy.astype(np.float32, copy=False)
    keep: list[int] = []
    limit = len(order) if max_detections is None else max_detections
    while order.size and len(keep) < limit:
        best = order[0]
        keep.append(int(best))
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[box_iou_one_to_many(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


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
