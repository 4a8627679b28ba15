"""Letterbox resize and its inverse: pure functions shared by the daemon and the tools.

The geometry matches Ultralytics' ``LetterBox(auto=False, center=True)`` so that a model exported
by Ultralytics sees the same pixels here as in ``predict``/``val``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How a source image was placed into the model input: ``input = source * scale + pad``."""

    scale: float
    pad_x: int
    pad_y: int
    source_width: int
    source_height: int


def letterbox_geometry(
    source_width: int, source_height: int, input_width: int, input_height: int
) -> tuple[Letterbox, int, int]:
    """Compute the letterbox for a source size; returns it and the resized (unpadded) size."""
    scale = min(input_width / source_width, input_height / source_height)
    new_w = round(source_width * scale)
    new_h = round(source_height * scale)
    pad_w = (input_width - new_w) / 2
    pad_h = (input_height - new_h) / 2
    left = round(pad_w - 0.1)
    top = round(pad_h - 0.1)
    return Letterbox(scale, left, top, source_width, source_height), new_w, new_h


def letterbox(
    image: np.ndarray,
    input_width: int,
    input_height: int,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (H×W×3 uint8) into an ``input_height×input_width×3`` canvas, keeping aspect.

    ``out`` lets callers letterbox straight into a preallocated buffer (e.g. shared memory).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 image, got shape {image.shape}")
    src_h, src_w = image.shape[:2]
    box, new_w, new_h = letterbox_geometry(src_w, src_h, input_width, input_height)
    if out is None:
        out = np.empty((input_height, input_width, 3), dtype=np.uint8)
    out[...] = PAD_VALUE
    region = out[box.pad_y : box.pad_y + new_h, box.pad_x : box.pad_x + new_w]
    if (new_w, new_h) == (src_w, src_h):
        region[...] = image
    else:
        cv2.resize(image, (new_w, new_h), dst=region, interpolation=cv2.INTER_LINEAR)
    return out, box


def to_nchw_float(
    letterboxed_bgr: np.ndarray, out: np.ndarray | None = None, swap_rb: bool = True
) -> np.ndarray:
    """HWC uint8 BGR → 1×3×H×W float32 RGB in 0–1 (the Ultralytics ONNX input convention)."""
    h, w = letterboxed_bgr.shape[:2]
    if out is None:
        out = np.empty((1, 3, h, w), dtype=np.float32)
    channels = (2, 1, 0) if swap_rb else (0, 1, 2)
    for dst, src in enumerate(channels):
        # One pass per channel: strided read, contiguous write, scale fused into the multiply.
        np.multiply(letterboxed_bgr[:, :, src], np.float32(1 / 255), out=out[0, dst])
    return out


def to_nhwc_uint8(letterboxed_bgr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """HWC uint8 BGR → 1×H×W×3 uint8 RGB (the Hailo HEF input convention)."""
    h, w = letterboxed_bgr.shape[:2]
    if out is None:
        out = np.empty((1, h, w, 3), dtype=np.uint8)
    cv2.cvtColor(letterboxed_bgr, cv2.COLOR_BGR2RGB, dst=out[0])
    return out


def unletterbox_boxes(boxes_xyxy: np.ndarray, box: Letterbox) -> np.ndarray:
    """Map boxes from model-input pixels back to source pixels, clipped to the source image."""
    result = np.empty_like(boxes_xyxy, dtype=np.float32)
    for col, pad, limit in ((0, box.pad_x, box.source_width), (1, box.pad_y, box.source_height)):
        for c in (col, col + 2):
            result[:, c] = np.clip((boxes_xyxy[:, c] - pad) / box.scale, 0, limit)
    return result
