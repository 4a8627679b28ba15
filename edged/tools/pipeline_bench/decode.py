"""Decode + NMS micro-benchmark on synthetic YOLOv8 outputs (whole and raw-head layouts)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from edged.tools.pipeline_bench.measure import percentile_summary


def synthetic_yolov8_output(
    scenario: str, num_classes: int = 80, anchors: int = 8400, size: int = 640, seed: int = 0
) -> Any:
    """A ``1×(4+C)×N`` YOLOv8 output with a known score distribution.

    ``typical``: a scene of 20 objects, each seen by 15 stride-8 anchors around its centre with
    scores 0.3–0.9 and jittered boxes (what NMS exists for), the rest background below 0.05.
    ``crowded``: 100 objects the same way (~1500 candidates above threshold).
    ``dense``: every anchor above the threshold with a random box and class (the worst case).
    ``empty``: nothing above threshold (what an untrained model produces).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.zeros((1, 4 + num_classes, anchors), np.float32)
    out[0, 0:2] = rng.uniform(0, size, (2, anchors))
    out[0, 2:4] = rng.uniform(4, 120, (2, anchors))
    if scenario == "empty":
        out[0, 4:] = rng.uniform(0, 0.01, (num_classes, anchors))
        return out
    if scenario == "dense":
        out[0, 4:] = rng.uniform(0, 0.2, (num_classes, anchors))
        cls = rng.integers(0, num_classes, anchors)
        out[0, 4 + cls, np.arange(anchors)] = rng.uniform(0.3, 0.95, anchors)
        return out
    objects = {"typical": 20, "crowded": 100}[scenario]
    out[0, 4:] = rng.uniform(0, 0.05, (num_classes, anchors))
    side = size // 8  # the stride-8 map: its anchors come first
    per = 15
    for _ in range(objects):
        cx, cy = rng.uniform(50, size - 50, 2)
        w, h = rng.uniform(20, 180, 2)
        # Anchors around the object, as a detector's are (and so within reach of a YOLOv8 DFL).
        gx, gy = int(cx // 8), int(cy // 8)
        near = [
            y * side + x
            for y in range(max(gy - 2, 0), min(gy + 3, side))
            for x in range(max(gx - 2, 0), min(gx + 3, side))
        ]
        members = rng.choice(near, per, replace=False)
        cls = int(rng.integers(0, num_classes))
        out[0, 0, members] = cx + rng.normal(0, 3, per)
        out[0, 1, members] = cy + rng.normal(0, 3, per)
        out[0, 2, members] = w * rng.uniform(0.9, 1.1, per)
        out[0, 3, members] = h * rng.uniform(0.9, 1.1, per)
        out[0, 4 + cls, members] = rng.uniform(0.3, 0.9, per)
    return out


YOLOV8_HEAD = (80, 40, 20)  # feature-map sides of a 640×640 YOLOv8 (strides 8, 16, 32)


def yolov8_head_of(output: Any, reg_max: int = 16) -> tuple[list[Any], Any]:
    """The raw head outputs (box distributions, class logits per scale) that decode to about
    ``output`` (a ``1×(4+C)×8400`` YOLOv8 output), and the head's parameters: the input of
    the decoder the daemon uses when it cut the model at its head."""
    import numpy as np

    from edged.postprocess.raw_heads import YOLOV8, HeadScale, RawHead

    classes = output.shape[1] - 4
    scores = np.clip(output[0, 4:], 1e-6, 1 - 1e-6)
    logits = np.log(scores / (1 - scores)).astype(np.float32)
    bins = np.arange(reg_max, dtype=np.float32)
    outputs, scales, start = [], [], 0
    for side in YOLOV8_HEAD:
        stride, cells = 640 / side, side * side
        ys, xs = np.divmod(np.arange(cells), side)
        cx, cy, w, h = output[0, :4, start : start + cells]
        ax, ay = (xs + 0.5) * stride, (ys + 0.5) * stride
        sides = np.stack([ax - (cx - w / 2), ay - (cy - h / 2), cx + w / 2 - ax, cy + h / 2 - ay])
        distance = np.clip(sides / stride, 0, reg_max - 1)  # 4×cells, in strides
        # A peaked distribution around each distance: the DFL's expectation lands on it.
        box = -4.0 * (bins[None, :, None] - distance[:, None, :]) ** 2
        outputs.append(box.reshape(1, 4 * reg_max, side, side).astype(np.float32))
        outputs.append(logits[:, start : start + cells].reshape(1, classes, side, side))
        scales.append(HeadScale(side, side, stride))
        start += cells
    return outputs, RawHead(YOLOV8, classes, tuple(scales), reg_max)


def decode_nms_microbench(
    runs: int = 1000, scenarios: Sequence[str] = ("empty", "typical", "crowded", "dense")
) -> dict[str, Any]:
    """p50/p99 of ``edged.postprocess.decoders.decode`` (decode + NMS + unletterbox) in ms.

    Both wall-clock time and this thread's CPU time per call are recorded: on a shared machine
    the wall-clock tail is mostly time spent preempted by other processes, the CPU-time tail is
    what the code costs (the two agree on a quiet machine).
    """
    import numpy as np

    from edged.postprocess.decoders import DecodeParams, OutputLayout, decode
    from edged.preprocess import letterbox_geometry

    box, _, _ = letterbox_geometry(1280, 720, 640, 640)
    params = DecodeParams()
    results = {}
    cases = [(s, False) for s in scenarios] + [(s, True) for s in scenarios]
    for scenario, raw in cases:
        output = synthetic_yolov8_output(scenario)
        outputs, head = yolov8_head_of(output) if raw else ([output], None)
        layout = OutputLayout.RAW_HEAD if raw else OutputLayout.YOLOV8
        n = runs if scenario != "dense" else max(10, runs // 20)
        for _ in range(min(20, n)):
            detections = decode(outputs, layout, params, (640, 640), box, head)
        times, cpu = [], []
        for _ in range(n):
            c0 = time.thread_time_ns()
            t0 = time.perf_counter()
            detections = decode(outputs, layout, params, (640, 640), box, head)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time_ns() - c0) / 1e6)
        best = output[0, 4:].max(axis=0)
        results[f"{scenario} (raw head)" if raw else scenario] = {
            "anchors": int(output.shape[2]),
            "candidates": int(np.count_nonzero(best > params.conf_threshold)),
            "detections": len(detections),
            "runs": n,
            **percentile_summary(times),
            "cpu_ms": percentile_summary(cpu),
        }
    return {"load": [round(x, 2) for x in os.getloadavg()], "scenarios": results}
