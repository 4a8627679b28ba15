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
