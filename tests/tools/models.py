"""Tiny synthetic ONNX detectors built with onnx.helper: milliseconds to load and run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NAMES = {0: "cat", 1: "dog"}


def tiny_yolov8(path: Path, size: int = 32, seed: int = 0, constant: float | None = None) -> Path:
    """``1×3×size×size`` → Conv 3→6 → Sigmoid → ``1×6×size²`` (YOLOv8 layout, 2 classes).

    Box rows come out in 0–1 (tiny boxes), so decoding is exercised without real weights.
    ``constant``: zero weights and this bias, a constant Conv output (a dead layer).
    """
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(6, 3, 1, 1)).astype(np.float32)
    b = np.zeros(6, np.float32)
    if constant is not None:
        w[:] = 0
        b[:] = constant
    weight = numpy_helper.from_array(w, "w")
    bias = numpy_helper.from_array(b, "b")
    shape = numpy_helper.from_array(np.array([1, 6, size * size], np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w", "b"], ["conv"], name="head_conv"),
            helper.make_node("Sigmoid", ["conv"], ["sig"], name="sigmoid"),
            helper.make_node("Reshape", ["sig", "shape"], ["output0"], name="reshape"),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, size * size])],
        [weight, bias, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key="names", value=str(NAMES))
    model.metadata_props.add(key="stride", value="32")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tiny_dataset(root: Path, count: int = 3) -> Path:
    """A YOLO dataset: ``images/val``, ``labels/val`` and a ``data.yaml`` (classes cat, dog)."""
    import cv2

    images, labels = root / "images" / "val", root / "labels" / "val"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(images / f"{i:03d}.jpg"), np.full((100, 200, 3), 50 * i, np.uint8))
    (labels / "000.txt").write_text("1 0.5 0.5 0.5 0.2\n0 0.25 0.25 0.1 0.1\n")
    (labels / "001.txt").write_text("")
    (root / "data.yaml").write_text("path: .\nval: images/val\nnames: {0: cat, 1: dog}\n")
    return root / "data.yaml"
