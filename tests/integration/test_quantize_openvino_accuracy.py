"""``edged quantize openvino --data --max-drop``: NNCF accuracy control with edged's own mAP50-95.

One real run on a small subset (4 calibration images, 8 labelled images, a max drop of 100
points so NNCF stops after measuring FP32 and INT8 once); the full figures come from the
README's commands. The restorer's path (reverting layers) is driven on a three-Conv model with
a validation function of its own, so it takes seconds, and checks that the names read from
NNCF's log are the layers left without quantizers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from edged.tools import register_commands
from edged.tools.evaluate import EvalSettings, evaluate
from edged.tools.nncf_report import nncf_log, parse
from edged.tools.runner import ModelRunner
from tests.tools.data import COCO128_IMAGES, COCO_VAL, YOLOV5N, require

pytestmark = pytest.mark.slow
VAL_IMAGES = 8


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="edged")
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_accuracy_control_writes_an_ir_and_records_nncf_s_figures(tmp_path: Path) -> None:
    pytest.importorskip("nncf")
    source, calib, data = require(YOLOV5N), require(COCO128_IMAGES), require(COCO_VAL)
    out = tmp_path / "ac.xml"
    assert _run("quantize", "openvino", str(source), "--calib", str(calib), "--num-images", "4",
                "--data", str(data), "--max-images", str(VAL_IMAGES), "--max-drop", "100",
                "-o", str(out), "--no-progress") == 0  # fmt: skip

    sidecar = json.loads(out.with_suffix(".xml.json").read_text())
    assert sidecar["settings"]["mode"] == "accuracy_control"
    assert sidecar["settings"]["max_drop_points"] == 100.0
    assert "/model.24/Sigmoid" in sidecar["excluded_nodes"]  # the head stays float, as plain
    ac = sidecar["accuracy_control"]
    assert (ac["images"], ac["drop_type"], ac["nncf_max_drop"]) == (VAL_IMAGES, "ABSOLUTE", 1.0)
    assert ac["inference_precision"] == "f32"
    reference, quantized = ac["reference_metric"], ac["quantized_metric"]
    assert 0.1 < reference < 1 and 0.1 < quantized < 1
    # 100 points is never exceeded: NNCF keeps the fully quantized model, reverts nothing.
    assert ac["reverted_to_float"] == [] and not ac["reverted_all"]
    assert ac["final_metric"] == pytest.approx(quantized, abs=1e-9)
    assert ac["final_drop_points"] == pytest.approx(100 * (reference - quantized), abs=1e-3)
    assert sidecar["warnings"] == []

    # The IR loads in edged's OpenVINO backend with its class names, and the metrics are on
    # edged eval's scale: the reference is ORT FP32's mAP50-95, the final one the IR's.
    runner = ModelRunner(out, None, EvalSettings().decode_params())
    try:
        assert runner.backend_name == "openvino"
        assert runner.backend.precision == "int8-openvino"
        assert runner.names is not None and runner.names[0] == "person"
    finally:
        runner.close()
    settings = EvalSettings(max_images=VAL_IMAGES)
    fp32 = evaluate(source, data, settings, progress=False).metrics.map50_95
    int8 = evaluate(out, data, settings, progress=False).metrics.map50_95
    assert reference == pytest.approx(fp32, abs=0.002)
    assert ac["final_metric"] == pytest.approx(int8, abs=0.005)


@pytest.mark.parametrize("flag", [("--max-drop", "1.0"), ("--max-images", "8")])
def test_accuracy_options_without_data_name_the_option(
    flag: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "never.xml"
    assert _run("quantize", "openvino", str(tmp_path / "m.onnx"), "--calib", str(tmp_path),
                *flag, "-o", str(out)) == 2  # fmt: skip
    assert f"{flag[0]} needs --data" in capsys.readouterr().err
    assert not out.exists()


def _three_convs():
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, 3, 16, 16], np.float32, name="image")
    node = x
    for i, (cin, cout) in enumerate(((3, 8), (8, 8), (8, 4))):
        w = ops.constant(rng.normal(0, 0.5, (cout, cin, 3, 3)).astype(np.float32))
        node = ops.convolution(node, w, [1, 1], [1, 1], [1, 1], [1, 1])
        node.set_friendly_name(f"conv{i}")
        node = ops.relu(node)
    return ov.Model([node], [x], "three-convs")


def test_the_reverted_layers_read_from_nncf_s_log_are_the_ones_left_float() -> None:
    nncf = pytest.importorskip("nncf")
    import openvino as ov

    model = _three_convs()
    rng = np.random.default_rng(1)
    items = [rng.random((1, 3, 16, 16), np.float32) for _ in range(8)]
    # f32 as NNCF compiles its candidates (the CPU may otherwise pick bf16 for float parts).
    reference = ov.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    expected = [reference(x)[0] for x in items]

    def error_of(compiled, indices) -> tuple[float, list[float]]:
        """1 - the mean absolute error against FP32 (higher is better, as NNCF wants; not 0 at
        best: NNCF divides by it); the items are indices, to find each one's FP32 output."""
        each = [1 - float(np.abs(compiled(items[i])[0] - expected[i]).mean()) for i in indices]
        return float(np.mean(each)), each

    validation = nncf.Dataset(list(range(len(items))))
    quantized = nncf.quantize(model, nncf.Dataset(items), subset_size=len(items))
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    drop = 1 - error_of(ov.compile_model(quantized, "CPU", f32), range(len(items)))[0]
    assert drop > 0
    with nncf_log() as messages:
        result = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(items), validation, error_of, max_drop=drop / 2,
            drop_type=nncf.DropType.ABSOLUTE, subset_size=len(items),
        )  # fmt: skip
    report = parse(messages)
    assert report.metrics["initial"] == pytest.approx(1.0, abs=1e-6)
    assert report.metrics["quantized"] == pytest.approx(1 - drop, abs=1e-6)
    assert report.quantized_operations == 3
    assert report.reverted and set(report.reverted) <= {"conv0", "conv1", "conv2"}
    fed_by_fake_quantize = {
        op.get_friendly_name()
        for op in result.get_ops()
        if op.get_type_name() == "Convolution"
        and op.input_value(0).get_node().get_type_name() == "FakeQuantize"
    }
    assert fed_by_fake_quantize, "some convolution stays quantized"
    assert set(report.reverted) == {"conv0", "conv1", "conv2"} - fed_by_fake_quantize
