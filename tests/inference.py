"""One image through a loaded NHWC uint8 backend (Hailo), the way the daemon's stages run it.

Shared by the Hailo tests against the test double and against a real device, so both check the
same letterbox → infer → decode path.
"""

from __future__ import annotations

import numpy as np

from edged.backends.base import Backend
from edged.postprocess.decoders import DecodeParams, Detections, decode, detect_layout
from edged.preprocess import letterbox, to_nhwc_uint8


def detect(
    backend: Backend, image_bgr: np.ndarray, conf_threshold: float, num_classes: int = 80
) -> Detections:
    """Detections in ``image_bgr``'s own pixels (the letterbox undone), COCO classes by default."""
    size = (backend.input.width, backend.input.height)
    canvas, box = letterbox(image_bgr, *size)
    outputs = backend.infer(to_nhwc_uint8(canvas))
    layout = detect_layout(backend.output_shapes, num_classes)
    return decode(outputs, layout, DecodeParams(conf_threshold=conf_threshold), size, box)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1,y1,x2,y2 boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
