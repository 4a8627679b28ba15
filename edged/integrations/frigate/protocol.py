"""Frigate's zmq detector protocol, as pure functions.

A request is a multipart message ``[header_json, tensor_bytes]``; the header names the tensor's
``shape`` (``[1, H, W, 3]`` NHWC or ``[1, 3, H, W]`` NCHW), ``dtype`` (``uint8`` or
``float32``) and ``model_type`` (Frigate's model family; informational here, edged serves its
own model). The reply is one frame: a float32 ``(20, 6)`` array, rows ``[class_id, score,
y_min, x_min, y_max, x_max]`` normalised 0–1 to the tensor, best first, zeros for empty rows.
Anything wrong with a request gets the all-zero reply (Frigate reads it as "nothing there").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edged.postprocess.decoders import Detections

RESULT_ROWS = 20
RESULT_SHAPE = (RESULT_ROWS, 6)
EMPTY_REPLY = np.zeros(RESULT_SHAPE, np.float32).tobytes()
MAX_HEADER_BYTES = 4096
MAX_SIDE = 4096  # pixels; a bigger tensor is refused before anything is allocated
DTYPES = {"uint8": np.uint8, "float32": np.float32}


class RequestError(ValueError):
    """A request edged cannot answer; the message says which part is wrong."""


@dataclass(frozen=True)
class TensorHeader:
    height: int
    width: int
    layout: Literal["NHWC", "NCHW"]
    dtype: str
    model_type: str

    @property
    def shape(self) -> tuple[int, int, int, int]:
        if self.layout == "NHWC":
            return (1, self.height, self.width, 3)
        return (1, 3, self.height, self.width)

    @property
    def nbytes(self) -> int:
        return self.height * self.width * 3 * np.dtype(DTYPES[self.dtype]).itemsize


def parse_header(raw: bytes) -> TensorHeader:
    """Validate the JSON header; raises :class:`RequestError` naming the field."""
    if len(raw) > MAX_HEADER_BYTES:
        raise RequestError(f"header larger than {MAX_HEADER_BYTES} bytes")
    try:
        data: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestError(f"header is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError("header must be a JSON object")
    shape = data.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) not in (3, 4)
        or not all(type(d) is int for d in shape)
    ):
        raise RequestError(f"shape must be a list of 3 or 4 integers, got {shape!r}")
    if len(shape) == 4:
        if shape[0] != 1:
            raise RequestError(f"shape {shape}: only batch 1 is served")
        shape = shape[1:]
    if shape[2] == 3:
        layout: Literal["NHWC", "NCHW"] = "NHWC"
        height, width = shape[0], shape[1]
    elif shape[0] == 3:
        layout, height, width = "NCHW", shape[1], shape[2]
    else:
        raise RequestError(f"shape {data['shape']}: expected 3 channels first or last")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise RequestError(f"shape {data['shape']}: sides must be 1..{MAX_SIDE}")
    dtype = data.get("dtype")
    if dtype not in DTYPES:
        raise RequestError(f"dtype {dtype!r} not served (expected one of: {', '.join(DTYPES)})")
    model_type = data.get("model_type", "")
    if not isinstance(model_type, str):
        raise RequestError("model_type must be a string")
    return TensorHeader(height, width, layout, dtype, model_type)


def parse_request(parts: list[bytes]) -> tuple[TensorHeader, np.ndarray]:
    """``[header, tensor]`` → the header and the tensor (a read-only view of the bytes)."""
    if len(parts) != 2:
        raise RequestError(f"expected 2 message frames (header, tensor), got {len(parts)}")
    header = parse_header(parts[0])
    if len(parts[1]) != header.nbytes:
        raise RequestError(
            f"tensor has {len(parts[1])} bytes; shape {list(header.shape)} {header.dtype} "
            f"needs {header.nbytes}"
        )
    tensor = np.frombuffer(parts[1], dtype=DTYPES[header.dtype]).reshape(header.shape)
    return header, tensor


def to_image(
    header: TensorHeader, tensor: np.ndarray, float_range: Literal["0-255", "0-1"] = "0-255"
) -> np.ndarray:
    """The tensor as an H×W×3 uint8 image in the channel order it came in (contiguous)."""
    hwc = tensor[0] if header.layout == "NHWC" else tensor[0].transpose(1, 2, 0)
    if hwc.dtype == np.uint8:
        return np.ascontiguousarray(hwc)
    scale = 255.0 if float_range == "0-1" else 1.0
    # NaN → 0; values out of range are clipped rather than wrapped around.
    scaled = np.nan_to_num(hwc.astype(np.float32) * scale, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def encode_reply(detections: Detections, width: int, height: int) -> bytes:
    """Detections in tensor pixels → the (20, 6) reply, best ``RESULT_ROWS`` first."""
    result = np.zeros(RESULT_SHAPE, np.float32)
    order = np.argsort(-detections.scores, kind="stable")[:RESULT_ROWS]
    n = len(order)
    if n:
        boxes = detections.boxes[order]
        result[:n, 0] = detections.class_ids[order]
        result[:n, 1] = detections.scores[order]
        result[:n, 2] = np.clip(boxes[:, 1] / height, 0, 1)
        result[:n, 3] = np.clip(boxes[:, 0] / width, 0, 1)
        result[:n, 4] = np.clip(boxes[:, 3] / height, 0, 1)
        result[:n, 5] = np.clip(boxes[:, 2] / width, 0, 1)
    return result.tobytes()
