"""``edged bench --batch``: one call on N frames against one per frame (issue 18's "batch frames
of different cameras — measure before keeping"), and the batch-axis rewrite it needs.

Tiny onnx.helper models for the figures, the CLI and the refusals (milliseconds); the real
yolov5n for the one check that matters: each frame of a batch detects what it does alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edged.postprocess.decoders import DecodeParams
from edged.tools.backend_choice import options_for
from edged.tools.batch_axis import symbolic_batch, write_symbolic_batch
from edged.tools.batch_bench import (
    BatchBenchResult,
    benchmark_batches,
    benchmark_batches_isolated,
    check_batch_axis,
    frame_outputs,
    largest_difference,
    letterbox_batch,
    open_batched,
)
from edged.tools.bench import BenchSettings
from edged.tools.commands import _batch_list
from edged.tools.dataset import read_image
from edged.tools.errors import ToolError
from edged.tools.results import load_results
from edged.tools.runner import ModelRunner
from tests.paths import REPO_ROOT, VAL_IMAGES, YOLOV5N, require
from tests.tools.models import tiny_yolov8


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_yolov8(tmp_path_factory.mktemp("tiny") / "fixed.onnx")


@pytest.fixture(scope="module")
def dynamic(fixed: Path) -> Path:
    out = fixed.with_name("dynamic.onnx")
    write_symbolic_batch(fixed, out)
    return out


def _edged(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "edged.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)  # fmt: skip


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_figures_for_batch_1_and_each_size_from_one_interleaved_run(
    dynamic: Path, backend: str
) -> None:
    before = os.sched_getaffinity(0)
    r = benchmark_batches(dynamic, [4, 2], BenchSettings(warmup=1, runs=5, backend=backend))
    assert os.sched_getaffinity(0) == before  # pinning is undone
    assert [f.batch for f in r.figures] == [1, 2, 4]  # batch 1 always, as the reference
    assert r.identity["backend"] == backend and r.identity["precision"] == "fp32"
    for f in r.figures:
        assert f.calls == 5
        assert f.per_frame_ms == pytest.approx(f.call_mean_ms / f.batch, abs=0.002)
        # call_mean_ms is rounded to 3 decimals: a relative error that matters for tiny models
        rounding = 0.0006 / f.call_mean_ms
        assert f.fps == pytest.approx(1000 * f.batch / f.call_mean_ms, rel=0.01 + rounding)
        assert f.max_abs_diff <= 1e-5  # each frame of the batch came out as it does alone
    assert r.figures[0].vs_batch1 == 1.0
    assert r.figures[2].vs_batch1 == pytest.approx(r.figures[2].fps / r.figures[0].fps, rel=0.01)
    assert BatchBenchResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_a_fixed_batch_model_is_refused_naming_why(fixed: Path) -> None:
    with pytest.raises(ToolError, match=r"batch axis is fixed at 1, so it cannot take 2") as err:
        benchmark_batches(fixed, [2], BenchSettings(warmup=0, runs=1))
    assert "dynamic batch axis" in str(err.value) and "edged.tools.batch_axis" in str(err.value)
    # The same through the isolated worker (the CLI's default): the one-line reason comes back.
    with pytest.raises(ToolError, match="batch axis is fixed at 1"):
        benchmark_batches_isolated(fixed, [2], BenchSettings(warmup=0, runs=1))


def test_an_input_without_a_fixed_height_and_width_is_refused() -> None:
    with pytest.raises(ToolError, match=r"named or dynamic height/width.*make_dynamic_shape"):
        check_batch_axis("m.onnx", ["batch", 3, "height", "width"], 2)
    # Not a height/width matter: an NHWC input is refused for its layout, with no fix offered.
    with pytest.raises(ToolError, match=r"is not B×3×H×W \(batch, 3 colour") as err:
        check_batch_axis("m.onnx", ["batch", 640, 640, 3], 2)
    assert "make_dynamic_shape" not in str(err.value)
    assert check_batch_axis("m.onnx", ["batch", 3, 480, 640], 4) == (480, 640)
    assert check_batch_axis("m.onnx", [4, 3, 480, 640], 4) == (480, 640)  # fixed but matching


@pytest.mark.parametrize(
    ("model", "reason"),
    [("m.param", "NCNN's extractor runs one image per call"), ("m.hef", "HEF compiled for")],
)
def test_backends_without_a_batch_path_are_refused_with_the_reason(
    tmp_path: Path, model: str, reason: str
) -> None:
    (tmp_path / model).write_bytes(b"")
    with pytest.raises(ToolError, match=reason):
        open_batched(tmp_path / model, None, 2)  # type: ignore[arg-type]


def test_the_cli_prints_each_batch_size_and_writes_json(dynamic: Path, tmp_path: Path) -> None:
    out = tmp_path / "batch.json"
    done = _edged("bench", str(dynamic), "--batch", "3", "--warmup", "1", "--runs", "2",
                  "--json", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "per_frame_ms" in done.stdout and "vs_batch1" in done.stdout
    (record,) = json.loads(out.read_text())
    assert record["kind"] == "edged.bench-batch"
    assert [f["batch"] for f in record["figures"]] == [1, 3]
    assert load_results([out]) == ([], [])  # `edged report` skips it instead of failing


def test_the_cli_refuses_a_fixed_batch_model_and_bad_sizes(fixed: Path) -> None:
    done = _edged("bench", str(fixed), "--batch", "2", "--runs", "1")
    assert done.returncode == 2
    assert "batch axis is fixed at 1" in done.stderr and "Traceback" not in done.stderr
    assert _batch_list("4,2,4") == (2, 4)
    for bad in ("0", "17", "two", ""):
        with pytest.raises(Exception, match="batch sizes"):
            _batch_list(bad)


def test_symbolic_batch_refuses_a_reshape_with_a_minus_one_already(fixed: Path) -> None:
    model = onnx.load(str(fixed))
    shape = next(t for t in model.graph.initializer if t.name == "shape")
    shape.CopyFrom(numpy_helper.from_array(np.array([1, 6, -1], np.int64), "shape"))
    with pytest.raises(ToolError, match=r"batch fixed at 1 and a -1 already.*dynamic=True"):
        symbolic_batch(model)


def test_a_graph_that_keeps_the_batch_elsewhere_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    # Concat with a constant 1×1×8×8 plane: runs at batch 1 only.
    plane = numpy_helper.from_array(np.zeros((1, 1, 8, 8), np.float32), "plane")
    graph = helper.make_graph(
        [helper.make_node("Concat", ["images", "plane"], ["out"], axis=1)],
        "keeps-batch",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])],
        [plane],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "in.onnx"))
    with pytest.raises(ToolError, match="a batch of 2 does not run"):
        write_symbolic_batch(tmp_path / "in.onnx", tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx"]


@pytest.fixture(scope="module")
def yolov5n_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batch") / "yolov5n-batch.onnx"
    rewritten, worst = write_symbolic_batch(require(YOLOV5N), out)
    assert rewritten == 6 and worst <= 1e-4  # YOLOv5's head: one Reshape pair per level
    return out


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_each_frame_of_a_real_batch_detects_what_it_does_alone(
    yolov5n_batch: Path, backend: str
) -> None:
    images = [read_image(p) for p in sorted(require(VAL_IMAGES).glob("*.jpg"))[:3]]
    # OpenVINO's performance mode may run bf16 (on CPUs that have it): both paths in float32.
    options = options_for(backend, 2, execution_mode="accuracy")
    alone, batch = (open_batched(yolov5n_batch, options, n, backend=backend) for n in (1, 3))
    tensor, boxes = letterbox_batch(images, batch.height, batch.width)
    together = frame_outputs(batch, tensor)
    by_itself = [frame_outputs(alone, tensor[i : i + 1])[0] for i in range(3)]
    alone.close()
    batch.close()
    assert largest_difference(by_itself, together) <= 1e-4
    assert largest_difference(by_itself[:1], by_itself[1:2]) > 1  # three different frames
    # Decoded as the daemon decodes the whole head (edged's ORT head cut off), against the
    # daemon's own batch-1 path on the original model (rewrites on).
    plain = options_for(backend, 2, graph_rewrites=False, execution_mode="accuracy")
    decoder = ModelRunner(require(YOLOV5N), plain, DecodeParams(), backend=backend)
    daemon = ModelRunner(require(YOLOV5N), options, DecodeParams(), backend=backend)
    try:
        for image, outputs, box in zip(images, together, boxes, strict=True):
            got, want = decoder.postprocess(outputs, box), daemon.detect(image)
            # Order by class, then left edge: near-equal scores may come out in either order.
            g, w = (np.lexsort((d.boxes[:, 0], d.class_ids)) for d in (got, want))
            assert len(want) > 0 and want.class_ids[w].tolist() == got.class_ids[g].tolist()
            np.testing.assert_allclose(got.boxes[g], want.boxes[w], atol=1.0)
            np.testing.assert_allclose(got.scores[g], want.scores[w], atol=1e-3)
    finally:
        decoder.close()
        daemon.close()


def test_batch_axis_refuses_a_file_that_is_not_onnx(tmp_path, capsys) -> None:
    from edged.tools.batch_axis import main

    garbage = tmp_path / "notes.onnx"
    garbage.write_bytes(b"\xff\x00 this is not a protobuf \xff" * 8)
    assert main([str(garbage), str(tmp_path / "out.onnx")]) == 1
    assert "is not an ONNX model" in capsys.readouterr().err
    assert not (tmp_path / "out.onnx").exists()
