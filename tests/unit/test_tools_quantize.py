"""Quantized variants load, run and keep their metadata; the head finder is what saves accuracy.

A fast configuration (4 calibration images) keeps this to seconds; the full figures
(128 images, 101 evaluation images) come from the commands in models/README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest

from edged.backends.onnxruntime import OnnxRuntimeBackend
from edged.config import OnnxRuntimeOptions
from edged.labels import labels_from_metadata
from edged.postprocess.raw_heads import raw_head_of
from edged.tools.bench import BenchSettings, benchmark
from edged.tools.calibration import chunk_size
from edged.tools.errors import ToolError
from edged.tools.evaluate import EvalSettings, evaluate
from edged.tools.provenance import sha256_file
from edged.tools.quantize import QuantizeResult, quantize_dynamic, quantize_static
from tests.tools.data import COCO128_IMAGES, COCO_VAL, YOLOV5N, require
from tests.tools.models import tiny_dataset, tiny_yolov8

CALIB = 4


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, QuantizeResult]:
    out = tmp_path_factory.mktemp("variants")
    source, calib = require(YOLOV5N), require(COCO128_IMAGES)
    return {
        "static": quantize_static(
            source, out / "static.onnx", calib, num_images=CALIB, progress=False
        ),
        "dynamic": quantize_dynamic(source, out / "dynamic.onnx"),
    }


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_variant_loads_in_the_daemon_backend_and_keeps_metadata(
    variants: dict[str, QuantizeResult], kind: str
) -> None:
    result = variants[kind]
    options = OnnxRuntimeOptions(intra_op_threads=1, graph_rewrites=False)  # the file as written
    backend = OnnxRuntimeBackend(result.output_path, options)
    source_meta = {p.key: p.value for p in onnx.load(str(YOLOV5N)).metadata_props}
    assert backend.precision == f"int8-{kind}"
    assert backend.metadata["names"] == source_meta["names"]
    assert backend.metadata["stride"] == source_meta["stride"]
    assert backend.metadata["edged_source_sha256"] == sha256_file(YOLOV5N)
    assert len(labels_from_metadata(backend.metadata) or ()) == 80
    assert backend.output_shapes == [(1, 25200, 85)]


def test_the_daemon_decodes_the_float_head_of_a_static_variant_outside_the_model(
    variants: dict[str, QuantizeResult],
) -> None:
    backend = OnnxRuntimeBackend(
        variants["static"].output_path, OnnxRuntimeOptions(intra_op_threads=1)
    )
    head = raw_head_of(backend.metadata)
    assert head is not None and head.kind == "yolov5"
    assert backend.output_shapes == [(1, 255, 80, 80), (1, 255, 40, 40), (1, 255, 20, 20)]


def test_static_is_qdq_with_the_head_in_float(variants: dict[str, QuantizeResult]) -> None:
    result = variants["static"]
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(result.output_path)
    assert "/model.24/Concat_3" in result.excluded_nodes
    assert result.peak_rss_bytes and result.peak_rss_bytes > 0
    assert "ConvInteger" in _ops(variants["dynamic"].output_path)


def test_sidecar_records_settings_calibration_and_provenance(
    variants: dict[str, QuantizeResult],
) -> None:
    record = json.loads(variants["static"].sidecar_path.read_text())
    assert variants["static"].sidecar_path.name == "static.onnx.json"
    assert record["precision"] == "int8-static"
    assert record["source"]["sha256"] == sha256_file(YOLOV5N)
    assert record["output_sha256"] == sha256_file(variants["static"].output_path)
    assert record["settings"]["format"] == "QDQ"
    assert record["settings"]["per_channel"] is True
    assert record["calibration"]["images"] == CALIB == len(record["calibration"]["files"])
    assert record["peak_rss_bytes"] > record["baseline_rss_bytes"] > 0
    assert record["duration_s"] > 0
    assert record["head_boundary"]
    assert record["settings"]["share_concat_scales"] is False
    assert record["concat_groups_shared"] == 0
    dynamic = json.loads(variants["dynamic"].sidecar_path.read_text())
    assert dynamic["precision"] == "int8-dynamic" and "calibration" not in dynamic


def test_shared_concat_scales_make_every_yolov5_concat_a_copy(tmp_path: Path) -> None:
    result = quantize_static(
        require(YOLOV5N),
        tmp_path / "shared.onnx",
        require(COCO128_IMAGES),
        num_images=2,
        share_concat_scales=True,
        progress=False,
    )
    record = json.loads(result.sidecar_path.read_text())
    assert record["settings"]["share_concat_scales"] is True
    assert record["concat_groups_shared"] == 11  # C3 ×8, SPPF, two neck chains of two
    options = OnnxRuntimeOptions(intra_op_threads=1, graph_rewrites=False)  # the file as written
    backend = OnnxRuntimeBackend(result.output_path, options)
    assert backend.output_shapes == [(1, 25200, 85)]
    # The copy condition itself: every quantized Concat reads and writes one scale/zero point.
    graph = onnx.load(str(result.output_path)).graph
    values = {t.name: onnx.numpy_helper.to_array(t).item() for t in graph.initializer
              if t.name.endswith(("_scale", "_zero_point")) and not t.dims}  # fmt: skip
    producer = {out: n for n in graph.node for out in n.output}
    joined = 0
    for concat in (n for n in graph.node if n.op_type == "Concat"):
        parents = [producer.get(name) for name in concat.input]
        if not all(p is not None and p.op_type == "DequantizeLinear" for p in parents):
            continue  # the float head's Concats
        sinks = [n for n in graph.node if concat.output[0] in n.input]
        params = {(values[n.input[1]], values[n.input[2]]) for n in [*parents, *sinks]}
        assert len(params) == 1, concat.name
        joined += 1
    assert joined == 13  # every quantized Concat of yolov5n


def test_direction_head_in_float_keeps_accuracy_naive_collapses(
    variants: dict[str, QuantizeResult], tmp_path: Path
) -> None:
    data = require(COCO_VAL)
    settings = EvalSettings(max_images=12, intra_op_threads=2)
    naive = quantize_static(
        YOLOV5N, tmp_path / "naive.onnx", COCO128_IMAGES, num_images=CALIB,
        keep_head_float=False, progress=False,
    )  # fmt: skip
    fp32, static, collapsed = (
        evaluate(m, data, settings, progress=False).metrics.map50
        for m in (YOLOV5N, variants["static"].output_path, naive.output_path)
    )
    assert fp32 > 0.4
    assert static > fp32 - 0.1
    assert collapsed < 0.05


def test_direction_static_is_faster_than_fp32(variants: dict[str, QuantizeResult]) -> None:
    settings = BenchSettings(intra_op_threads=2, warmup=3, runs=15)
    fp32 = benchmark(YOLOV5N, settings).infer.p50
    static = benchmark(variants["static"].output_path, settings).infer.p50
    assert static < fp32


def test_refusals(variants: dict[str, QuantizeResult], tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="already quantized"):
        quantize_dynamic(variants["static"].output_path, tmp_path / "again.onnx")
    with pytest.raises(ToolError, match="overwrite"):
        quantize_dynamic(YOLOV5N, YOLOV5N)
    with pytest.raises(ToolError, match="calibration method"):
        quantize_static(YOLOV5N, tmp_path / "x.onnx", COCO128_IMAGES, method="magic")  # type: ignore[arg-type]
    with pytest.raises(ToolError, match="not found"):
        quantize_dynamic(YOLOV5N, tmp_path / "y.onnx", exclude_nodes=["no-such-node"])
    with pytest.raises(ToolError, match="no node of op type sigmoid"):  # a typo is not silent
        quantize_dynamic(YOLOV5N, tmp_path / "y.onnx", exclude_op_types=["sigmoid"])
    uint8_model = onnx.load(str(tiny_yolov8(tmp_path / "u8.onnx")))
    uint8_model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.UINT8
    onnx.save(uint8_model, str(tmp_path / "u8.onnx"))
    with pytest.raises(ToolError, match="not float32"):
        quantize_dynamic(tmp_path / "u8.onnx", tmp_path / "u8-q.onnx", preprocess=False)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(YOLOV5N.read_bytes()[:5000] + b"\xff" * 64)
    for quantize in (quantize_dynamic, quantize_static):
        args = (COCO128_IMAGES,) if quantize is quantize_static else ()
        with pytest.raises(ToolError, match="not a readable ONNX model"):
            quantize(corrupt, tmp_path / "c-q.onnx", *args)


def test_histogram_failure_on_a_constant_tensor_falls_back_to_minmax(tmp_path: Path) -> None:
    # A dead layer (constant 1e4 output): numpy cannot bin it in float32; ORT's percentile
    # calibrator raises, as it does on untrained YOLOv8n's score branch.
    model = tiny_yolov8(tmp_path / "dead.onnx", constant=1e4)
    images = tiny_dataset(tmp_path / "data").parent / "images"
    result = quantize_static(
        model, tmp_path / "q.onnx", images, method="percentile", num_images=2, progress=False
    )
    assert result.settings["method"] == "minmax"
    assert result.settings["requested_method"] == "percentile"
    assert result.warnings and "fell back to minmax" in result.warnings[0]
    assert json.loads(result.sidecar_path.read_text())["warnings"] == list(result.warnings)


def test_pre_processing_works_without_sympy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime does not depend on sympy; its symbolic shape inference is then skipped.
    monkeypatch.setitem(sys.modules, "sympy", None)
    result = quantize_dynamic(require(YOLOV5N), tmp_path / "d.onnx")
    assert OnnxRuntimeBackend(result.output_path, OnnxRuntimeOptions()).precision == "int8-dynamic"


def test_chunks_divide_the_calibration_set() -> None:
    assert chunk_size(128, 4) == 4
    assert chunk_size(10, 4) == 2
    assert chunk_size(7, 4) == 1
    assert chunk_size(3, 8) == 3
