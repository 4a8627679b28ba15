"""Decoding YOLO detection heads outside the model: from the last Convs' raw outputs.

Exported YOLO models end in a head that turns the last Convs' outputs into boxes: sigmoid,
grid and anchor arithmetic (YOLOv5) or a distribution-to-distance softmax (YOLOv8's DFL), and
reshapes, transposes and concats that lay 25200×85 or 84×8400 values out for the caller. In
ONNX Runtime that is memory shuffling with poor locality: 15 % of yolov5n's inference time and
5 % of YOLOv8n's on a 2-core Xeon. :func:`edged.backends.ort_rewrites.cut_detect_head` removes
it from the graph when it can prove the numbers here reproduce it; the decoders below then do
the same arithmetic in the postprocess stage — which runs beside inference, not in series — and
only for the anchors whose score can pass the confidence threshold (a few hundred of 8400).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass

import numpy as np

HEAD_METADATA_KEY = "edged_raw_head"
YOLOV5, YOLOV8 = "yolov5", "yolov8"


@dataclass(frozen=True)
class HeadScale:
    """One feature map of the head: its size, stride and (YOLOv5) anchors in input pixels."""

    height: int
    width: int
    stride: float
    anchors: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class RawHead:
    """How to decode a model cut at its head: YOLOv5 outputs one ``1×A(5+C)×H×W`` tensor per
    scale; YOLOv8 two per scale, ``1×4R×H×W`` (box distributions) then ``1×C×H×W`` (classes)."""

    kind: str
    num_classes: int
    scales: tuple[HeadScale, ...]
    reg_max: int = 16  # YOLOv8 DFL bins

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> RawHead:
        data = json.loads(text)
        scales = tuple(
            HeadScale(s["height"], s["width"], s["stride"], tuple(map(tuple, s["anchors"])))
            for s in data["scales"]
        )
        return RawHead(data["kind"], data["num_classes"], scales, data.get("reg_max", 16))


def raw_head_of(metadata: dict[str, str]) -> RawHead | None:
    text = metadata.get(HEAD_METADATA_KEY)
    return RawHead.from_json(text) if text else None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x, dtype=np.float32))  # float32 throughout: no extra copy


def _logit(p: float) -> float:
    """The pre-sigmoid value of probability ``p``, lowered a hair so float rounding in the
    exact test that follows never loses a candidate."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p)) - 1e-4


@functools.lru_cache(maxsize=16)
def _anchor_sizes(anchors: tuple[tuple[float, float], ...]) -> np.ndarray:
    """A scale's anchor sizes as float32 (built once, not per frame; read-only)."""
    sizes = np.asarray(anchors, np.float32)
    sizes.flags.writeable = False
    return sizes


@functools.lru_cache(maxsize=4)
def _bin_positions(reg_max: int) -> np.ndarray:
    """0 … reg_max-1: the DFL expectation's weights (built once, not per frame; read-only)."""
    positions = np.arange(reg_max, dtype=np.float32)
    positions.flags.writeable = False
    return positions


@functools.lru_cache(maxsize=16)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row index of every cell, row-major (cached: the same few maps every frame)."""
    ys, xs = np.divmod(np.arange(height * width), width)
    return xs.astype(np.float32), ys.astype(np.float32)


# DFL logits are clipped to this before exp: no overflow or all-zero rows without a per-row max
# (a reduction over 16 values per row costs more than the rest of the decode); trained models'
# logits stay far inside it, so the softmax is the same.
_DFL_CLIP = 80.0


def yolov5_rows(raw: np.ndarray, scale: HeadScale, keep: np.ndarray | None = None) -> np.ndarray:
    """Rows ``cx, cy, w, h, obj, classes…`` (as the exported head computes them) for one scale,
    for the (anchor, cell) pairs in ``keep`` (default all), in the head's row order."""
    na = len(scale.anchors)
    cells = scale.height * scale.width
    logits = raw.reshape(na, -1, cells)
    if keep is None:
        keep = np.ones((na, cells), bool)
    anchor_idx, cell_idx = np.nonzero(keep)
    rows = _sigmoid(logits[anchor_idx, :, cell_idx])
    xs, ys = _grid(scale.height, scale.width)
    stride = np.float32(scale.stride)
    two, half = np.float32(2.0), np.float32(0.5)
    rows[:, 0] = (rows[:, 0] * two + (xs[cell_idx] - half)) * stride
    rows[:, 1] = (rows[:, 1] * two + (ys[cell_idx] - half)) * stride
    anchors = _anchor_sizes(scale.anchors)[anchor_idx]
    rows[:, 2:4] = np.square(rows[:, 2:4] * two) * anchors
    return rows


def yolov8_rows(
    box: np.ndarray, cls: np.ndarray, scale: HeadScale, reg_max: int, keep: np.ndarray | None = None
) -> np.ndarray:
    """Rows ``cx, cy, w, h, classes…`` for one scale at the cells in ``keep`` (default all)."""
    cells = scale.height * scale.width
    cell_idx = np.arange(cells) if keep is None else np.nonzero(keep)[0]
    # anchors × 4 sides × bins, contiguous: the softmax and expectation run over the last axis.
    bins = box.reshape(4 * reg_max, cells)[:, cell_idx].T.reshape(-1, 4, reg_max)
    np.clip(bins, -_DFL_CLIP, _DFL_CLIP, out=bins)
    np.exp(bins, out=bins)
    distance = ((bins @ _bin_positions(reg_max)) / bins.sum(axis=2)).T  # 4×n
    xs, ys = _grid(scale.height, scale.width)
    half = np.float32(0.5)
    cx, cy = xs[cell_idx] + half, ys[cell_idx] + half
    x1, y1 = cx - distance[0], cy - distance[1]
    x2, y2 = cx + distance[2], cy + distance[3]
    stride = np.float32(scale.stride)
    rows = np.empty((cell_idx.shape[0], 4 + cls.shape[1]), np.float32)
    rows[:, 0] = (x1 + x2) / np.float32(2.0) * stride
    rows[:, 1] = (y1 + y2) / np.float32(2.0) * stride
    rows[:, 2] = (x2 - x1) * stride
    rows[:, 3] = (y2 - y1) * stride
    rows[:, 4:] = _sigmoid(cls.reshape(-1, cells)[:, cell_idx].T)
    return rows


def dense_output(outputs: list[np.ndarray], head: RawHead) -> np.ndarray:
    """The whole head's output as the uncut model gives it (``1×N×(5+C)`` or ``1×(4+C)×N``):
    for checking a cut, not for serving."""
    parts = []
    for i, scale in enumerate(head.scales):
        if head.kind == YOLOV5:
            parts.append(yolov5_rows(outputs[i], scale))
        else:
            parts.append(yolov8_rows(outputs[2 * i], outputs[2 * i + 1], scale, head.reg_max))
    rows = np.concatenate(parts)
    return rows[None] if head.kind == YOLOV5 else rows.T[None]


def candidates(
    outputs: list[np.ndarray], head: RawHead, conf_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """``cxcywh`` boxes and per-class scores (objectness applied) of the anchors that can pass
    ``conf_threshold``, in the uncut model's row order."""
    floor = _logit(conf_threshold)
    boxes, scores = [], []
    for i, scale in enumerate(head.scales):
        if head.kind == YOLOV5:
            raw = outputs[i].reshape(len(scale.anchors), -1, scale.height * scale.width)
            rows = yolov5_rows(outputs[i], scale, raw[:, 4, :] > floor)
            rows = rows[rows[:, 4] > conf_threshold]  # what decode_yolov5 keeps
            boxes.append(rows[:, :4])
            scores.append(rows[:, 5:] * rows[:, 4:5])
        else:
            cls = outputs[2 * i + 1].reshape(head.num_classes, -1)
            keep = cls.max(axis=0) > floor
            rows = yolov8_rows(outputs[2 * i], outputs[2 * i + 1], scale, head.reg_max, keep)
            boxes.append(rows[:, :4])
            scores.append(rows[:, 4:])
    return np.concatenate(boxes), np.concatenate(scores)
