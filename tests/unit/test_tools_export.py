"""Ultralytics → ONNX export, offline (an untrained YOLOv8n from its YAML; no download)."""

from __future__ import annotations

import json

import pytest

from edged.backends.onnxruntime import OnnxRuntimeBackend
from edged.config import OnnxRuntimeOptions
from edged.labels import labels_from_metadata
from edged.postprocess.decoders import OutputLayout, detect_layout
from edged.tools.errors import ToolError
from edged.tools.export import export_ultralytics
from tests.tools.data import yolov8n_onnx


def test_export_keeps_class_names_and_a_static_input() -> None:
    path = yolov8n_onnx()  # skips when Ultralytics is not installed
    # The file's own outputs (the daemon's load-time rewrites would cut the head off).
    backend = OnnxRuntimeBackend(path, OnnxRuntimeOptions(intra_op_threads=1, graph_rewrites=False))
    # An untrained model from its YAML is named '0'…'79' by Ultralytics; the names travel as is.
    assert labels_from_metadata(backend.metadata) == tuple(str(i) for i in range(80))
    assert (backend.input.width, backend.input.height) == (640, 640)
    assert backend.output_shapes == [(1, 84, 8400)]
    assert detect_layout(backend.output_shapes, 80) is OutputLayout.YOLOV8
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["kind"] == "edged.export" and sidecar["classes"] == 80
    assert sidecar["settings"]["imgsz"] == 640
    assert sidecar["environment"]["ultralytics"]
    assert sidecar["input_shape"] == [1, 3, 640, 640]


def test_export_writes_only_the_output_it_was_given(tmp_path, monkeypatch) -> None:
    """Ultralytics writes <stem>.onnx into the working directory; a user's file of that name
    there must survive an export that was told to go elsewhere."""
    pytest.importorskip("ultralytics", reason="Ultralytics not installed (the [export] extra)")
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "yolov8n.onnx"
    mine.write_bytes(b"the user's own model")
    result = export_ultralytics("yolov8n.yaml", tmp_path / "out" / "small.onnx", imgsz=64)
    assert mine.read_bytes() == b"the user's own model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "yolov8n.onnx"]
    assert result.output_path == tmp_path / "out" / "small.onnx"
    sidecar = json.loads(result.sidecar_path.read_text())
    assert sidecar["input_shape"] == [1, 3, 64, 64] and sidecar["settings"]["imgsz"] == 64


@pytest.mark.parametrize("imgsz", [0, 16, 100, 650])
def test_an_input_size_ultralytics_would_change_is_refused(imgsz: int) -> None:
    with pytest.raises(ToolError, match=f"--imgsz {imgsz}: must be a multiple of 32"):
        export_ultralytics("yolov8n.yaml", imgsz=imgsz)


def test_a_file_that_is_no_weights_is_refused_before_ultralytics_loads(tmp_path) -> None:
    onnx_model = tmp_path / "model.onnx"
    onnx_model.write_bytes(b"\x08\x07")
    with pytest.raises(ToolError, match="not Ultralytics weights"):
        export_ultralytics(onnx_model)
