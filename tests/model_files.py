"""Real ONNX files that are bad in the ways a file can be: odd ``names`` metadata, external data
in odd places. Built with ``onnx`` from the tiny detector of tests.tools.models or YOLOv5n."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, numpy_helper

from tests.tools.models import tiny_yolov8

HUGE = "-" * 200_000 + "1"  # MemoryError in ast.literal_eval (the parser's stack)


def with_names(source: Path, target: Path, names: str) -> Path:
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == "names":
            prop.value = names
    onnx.save(model, str(target))
    return target


def external_model(models: Path, location: str, data_at: Path | None = None) -> Path:
    """The tiny detector with its Conv weight stored at ``location`` (written to ``data_at``,
    default: where the location points from ``models``)."""
    models.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(tiny_yolov8(models / "plain.onnx")))
    weight = next(t for t in model.graph.initializer if t.name == "w")
    data = numpy_helper.to_array(weight).tobytes()
    target = data_at or models / location
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        weight.external_data.add(key=key, value=value)
    path = models / "external.onnx"
    onnx.save(model, str(path))
    return path
