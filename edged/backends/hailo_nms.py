"""HailoRT NMS outputs → edged's dense ``K×6`` array (pure functions, no HailoRT import).

A HEF compiled with NMS returns detections "by class": for every class the boxes that survived
NMS, each ``y_min, x_min, y_max, x_max, score`` normalised to the HEF input. The raw output buffer
(HailoRT's ``HAILO_NMS`` / ``HAILO_NMS_BY_CLASS`` float32 layout) is, per class in order::

    bbox_count, then bbox_count × (y_min, x_min, y_max, x_max, score)

pyhailort's ``Bindings.output().get_buffer()`` turns that into a list of ``(n, 5)`` arrays, one per
class. Its exact nesting differs between releases (4.18 wraps the per-class list in a one-element
list, later releases do not; 4.20+ can also produce ``HAILO_NMS_BY_SCORE`` detection objects), so
:func:`nms_to_dense` accepts every form and always returns ``class_id, y_min, x_min, y_max, x_max,
score`` rows (float32), the layout :func:`edged.postprocess.decoders.decode_hailo_nms` consumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BBOX_PARAMS = 5  # y_min, x_min, y_max, x_max, score
DENSE_COLUMNS = 6  # class_id + BBOX_PARAMS


def empty_dense() -> np.ndarray:
    return np.zeros((0, DENSE_COLUMNS), np.float32)


def per_class_to_dense(per_class: Sequence[Any]) -> np.ndarray:
    """``[(n0, 5), (n1, 5), ...]`` (index = class id) → ``K×6`` float32."""
    arrays = [np.asarray(a, dtype=np.float32).reshape(-1, BBOX_PARAMS) for a in per_class]
    total = sum(a.shape[0] for a in arrays)
    out = np.empty((total, DENSE_COLUMNS), np.float32)
    row = 0
    for class_id, boxes in enumerate(arrays):
        n = boxes.shape[0]
        if n:
            out[row : row + n, 0] = class_id
            out[row : row + n, 1:] = boxes
            row += n
    return out


def raw_by_class_to_dense(raw: np.ndarray, num_classes: int) -> np.ndarray:
    """Parse a raw by-class NMS buffer (see module doc) into ``K×6`` float32.

    Raises:
        ValueError: the buffer is shorter than its own counts say (a truncated or foreign buffer).
    """
    flat = np.asarray(raw, dtype=np.float32).reshape(-1)
    rows = []
    offset = 0
    for class_id in range(num_classes):
        if offset >= flat.size:
            raise ValueError(f"NMS buffer ends before class {class_id} (size {flat.size})")
        count = int(flat[offset])
        offset += 1
        end = offset + count * BBOX_PARAMS
        if count < 0 or end > flat.size:
            raise ValueError(f"NMS buffer: class {class_id} claims {count} boxes past the end")
        if count:
            block = np.empty((count, DENSE_COLUMNS), np.float32)
            block[:, 0] = class_id
            block[:, 1:] = flat[offset:end].reshape(count, BBOX_PARAMS)
            rows.append(block)
        offset = end
    return np.concatenate(rows) if rows else empty_dense()


def _detection_object_row(det: Any) -> list[float]:
    """One ``HAILO_NMS_BY_SCORE`` detection object → a dense row (duck-typed across releases)."""
    box = getattr(det, "box", det)
    return [
        float(det.class_id),
        float(box.y_min),
        float(box.x_min),
        float(box.y_max),
        float(box.x_max),
        float(det.score),
    ]


def nms_to_dense(output: Any, num_classes: int | None = None) -> np.ndarray:
    """Any form pyhailort hands back for one frame's NMS output → ``K×6`` float32.

    Accepted: a per-class list of ``(n, 5)`` arrays; the same wrapped in a one-element list
    (HailoRT 4.18); a list of by-score detection objects (``class_id``, ``score`` and box
    coordinates); a raw 1-D float buffer (needs ``num_classes``).
    """
    if isinstance(output, np.ndarray) and output.dtype != object:
        if output.ndim == 2 and output.shape[1] == DENSE_COLUMNS and num_classes is None:
            return output.astype(np.float32, copy=False)
        if num_classes is None:
            raise ValueError("a raw NMS buffer needs the HEF's number of classes")
        return raw_by_class_to_dense(output, num_classes)
    items = list(output)
    if not items:
        return empty_dense()
    first = items[0]
    if len(items) == 1 and isinstance(first, list | tuple):
        # HailoRT 4.18: [[class0, class1, ...]] (a batch of one frame).
        return nms_to_dense(first, num_classes)
    if all(hasattr(item, "score") and hasattr(item, "class_id") for item in items):
        rows = [_detection_object_row(item) for item in items]
        return np.asarray(rows, dtype=np.float32).reshape(-1, DENSE_COLUMNS)
    return per_class_to_dense(items)
