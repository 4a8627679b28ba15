"""OpenVINO and NCNN as edged backends, against ONNX Runtime FP32, on real COCO images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edged.backends.base import BackendError, load_backend
from edged.config import backend_options, parse_config
from edged.models import ModelError, resolve_variant
from edged.pipeline.model_loader import load_model
from edged.postprocess.decoders import DecodeParams, Detections
from edged.tools.backend_choice import options_for
from edged.tools.runner import ModelRunner
from tests.inference import box_iou
from tests.paths import VAL_IMAGES, YOLOV5N, require

pytestmark = pytest.mark.integration

CONF = 0.25
MARGIN = 0.02  # detections this close to the threshold may fall either side of it


def _images(count: int = 25) -> list[np.ndarray]:
    paths = sorted(require(VAL_IMAGES).glob("*.jpg"))[:count]
    return [cv2.imread(str(p)) for p in paths]


def _runner(dir_: Path, variant: str) -> ModelRunner:
    resolved = resolve_variant(dir_ / "yolov5n.yaml", variant, dir_)
    inference = parse_config({}).inference
    options = backend_options(inference, resolved.backend, dict(resolved.options))
    return ModelRunner(resolved.path, options, DecodeParams(conf_threshold=CONF),
                       backend=resolved.backend)  # fmt: skip


def _compare(ours: Detections, theirs: Detections, score: float) -> tuple[list[float], list[str]]:
    """Each of ``ours`` clear of the threshold has a twin in ``theirs`` (same class, IoU > 0.9,
    score within ``score``): the largest box-edge gap of each pair, and what had no twin."""
    gaps, problems = [], []
    for i in np.flatnonzero(ours.scores >= CONF + MARGIN):
        twins = [j for j in range(len(theirs)) if theirs.class_ids[j] == ours.class_ids[i]
                 and box_iou(ours.boxes[i], theirs.boxes[j]) > 0.9]  # fmt: skip
        if not twins:
            problems.append(f"class {ours.class_ids[i]} @ {ours.boxes[i].round(1)}: no twin")
            continue
        j = max(twins, key=lambda j: box_iou(ours.boxes[i], theirs.boxes[j]))
        delta = abs(float(ours.scores[i] - theirs.scores[j]))
        if delta > score:
            problems.append(f"class {ours.class_ids[i]}: score off by {delta:.4f}")
        gaps.append(float(np.abs(ours.boxes[i] - theirs.boxes[j]).max()))
    return gaps, problems


# Score tolerance per backend. NCNN's SIMD sigmoid/exp (inside its Swish and Sigmoid layers)
# is an approximation: raw objectness and class scores differ from ORT's by up to 1.1e-3 and
# 1.6e-3 on these images (Winograd and sgemm off change nothing), so obj × cls differs by up to
# 1.7e-3 — mAP50-95 on coco-val2017-100 is 0.3409 vs ORT's 0.3404.
SCORE_TOLERANCE = {"openvino-fp32": 1e-3, "ncnn": 2.5e-3}


@pytest.mark.parametrize("variant", ["openvino-fp32", "ncnn"])
def test_fp32_backends_detect_what_onnxruntime_detects(runtime_variant_dir, variant):
    manifest = (runtime_variant_dir / "yolov5n.yaml").read_text()
    if f"{variant}:" not in manifest:
        pytest.skip("pnnx is not installed: no NCNN variant (pip install 'edged[ncnn-convert]')")
    reference, candidate = _runner(runtime_variant_dir, "fp32"), _runner(runtime_variant_dir,
                                                                         variant)  # fmt: skip
    gaps: list[float] = []
    for image in _images():
        ref, got = reference.detect(image), candidate.detect(image)
        ref_gaps, problems = _compare(ref, got, SCORE_TOLERANCE[variant])
        problems += _compare(got, ref, SCORE_TOLERANCE[variant])[1]
        assert not problems, problems
        gaps += ref_gaps
    assert len(gaps) > 50  # real detections, not an empty comparison
    # Boxes within 1 px — but where two overlapping candidates score within the tolerance,
    # NMS may keep the other one (seen once with NCNN: 3.6 px), so: nearly all, none far.
    within = sum(g <= 1.0 for g in gaps)
    assert within >= 0.95 * len(gaps) and max(gaps) < 8, (within, len(gaps), max(gaps))


def test_openvino_int8_ir_loads_with_class_names_and_detects(runtime_variant_dir):
    dir_ = runtime_variant_dir
    resolved = resolve_variant(dir_ / "yolov5n.yaml", "openvino-int8", dir_)
    inference = parse_config({"inference": {"openvino": {"threads": 1}}}).inference
    backend, model = load_model(resolved, inference, warmup_runs=1, generation=1)
    try:
        assert model.backend == "openvino"
        assert model.labels[:3] == ("person", "bicycle", "car")  # from the IR's rt_info
        assert model.input_layout == "NHWC" and model.input_dtype == "uint8"
        assert backend.metadata["edged_precision"] == "int8-openvino"
        assert backend.executed_precision.startswith("int8")  # the convolutions ran in int8
    finally:
        backend.close()
    # It still finds what FP32 finds on a clear picture (the INT8 accuracy is measured by
    # `edged eval`, see the README): most confident FP32 detections have a twin.
    reference, int8 = _runner(dir_, "fp32"), _runner(dir_, "openvino-int8")
    found = total = 0
    for image in _images(10):
        ref, got = reference.detect(image), int8.detect(image)
        strong = np.flatnonzero(ref.scores >= 0.6)
        total += len(strong)
        found += sum(any(got.class_ids[j] == ref.class_ids[i]
                         and box_iou(ref.boxes[i], got.boxes[j]) > 0.7 for j in range(len(got)))
                     for i in strong)  # fmt: skip
    assert total >= 10 and found >= 0.9 * total, (found, total)


def test_broken_openvino_files_are_clear_errors(runtime_variant_dir):
    dir_ = runtime_variant_dir
    inference = parse_config({}).inference
    with pytest.raises(ModelError, match=r"needs no-weights\.bin beside it"):
        resolve_variant(dir_ / "yolov5n.yaml", "openvino-no-weights", dir_)
    resolved = resolve_variant(dir_ / "yolov5n.yaml", "openvino-corrupt", dir_)
    with pytest.raises(BackendError, match="OpenVINO cannot read the model"):
        load_model(resolved, inference, warmup_runs=0, generation=1)
    # Straight through the loader, the missing weights are named too.
    with pytest.raises(BackendError, match=r"weights file no-weights\.bin is missing"):
        load_backend("openvino", dir_ / "no-weights.xml", options_for("openvino"), 0)


def test_openvino_runs_an_onnx_file_and_reports_what_ran(runtime_variant_dir):
    backend = load_backend("openvino", runtime_variant_dir / "yolov5n.onnx",
                           options_for("openvino", execution_mode="accuracy"), 1)  # fmt: skip
    try:
        assert backend.executed_precision == "fp32"  # accuracy mode: no bf16/fp16 shortcut
        assert backend.metadata["names"].startswith("{0: 'person'")
        outputs = [np.zeros(s, np.float32) for s in backend.output_shapes]
        tensor = np.full(backend.input.shape, 114, np.uint8)
        backend.infer_into(tensor, outputs)  # in place, as into the shared-memory ring
        np.testing.assert_array_equal(outputs[0], backend.infer(tensor)[0])
    finally:
        backend.close()


def test_openvino_takes_a_model_edged_rewrote_for_uint8_input(runtime_variant_dir, tmp_path):
    """The ORT rewrites' output (uint8 NHWC in, head cut) loads on OpenVINO as it is and gives
    ORT's outputs. (Measured, not made the default for OpenVINO: the cut head made YOLOv8n
    51.1 → 53.1 ms p50 with its decode moved to postprocess; OpenVINO fuses the head itself.)"""
    import subprocess
    import sys

    rewritten = tmp_path / "rewritten.onnx"
    source = runtime_variant_dir / "yolov5n.onnx"
    command = [sys.executable, "-m", "edged.backends.ort_rewrites", str(source), str(rewritten)]
    subprocess.run(command, check=True)
    accurate = options_for("openvino", execution_mode="accuracy")
    ov = load_backend("openvino", rewritten, accurate, 0)
    as_is = options_for("onnxruntime", graph_rewrites=False)
    ort = load_backend("onnxruntime", rewritten, as_is, 0)
    try:
        assert (ov.input.layout, ov.input.dtype) == ("NHWC", "uint8")
        image = _images(1)[0]
        tensor = np.ascontiguousarray(cv2.resize(image, (640, 640))[None, :, :, ::-1])
        for a, b in zip(ov.infer(tensor), ort.infer(tensor), strict=True):
            np.testing.assert_allclose(a, b, atol=2e-3, rtol=1e-3)
    finally:
        ov.close()
        ort.close()


def _two_submitted_match_infer(stage, tool, tensors, rtol, called):
    """Submit every tensor before waiting for any: each lands in its own outputs, equal to what
    ``tool.infer`` gives, and its ``on_done`` was ``called``. Returns the outputs."""
    import threading

    expected = [tool.infer(t)[0] for t in tensors]
    outputs = [[np.empty(s, np.float32) for s in stage.output_shapes] for _ in tensors]
    done = [threading.Event() for _ in tensors]
    handles = [stage.submit(t, out, ev.set)  # type: ignore[attr-defined]
               for t, out, ev in zip(tensors, outputs, done, strict=True)]  # fmt: skip
    for handle, out, ev, want in zip(handles, outputs, done, expected, strict=True):
        stage.wait(handle)  # type: ignore[attr-defined]
        assert called(ev)
        np.testing.assert_allclose(out[0], want, rtol=rtol, atol=1e-3)
    return outputs


def test_openvino_keeps_two_requests_in_flight_only_for_a_caller_that_can():
    """``requests: auto`` is 2 (throughput hint, a stream each) for the daemon's inference stage
    with 2 threads, and 1 for everyone else (tools, the Frigate detector), who run one frame
    after another; two frames submitted at once give what ``infer`` gives, each in its slot."""

    from edged.backends import requests_in_flight

    pytest.importorskip("openvino")
    model = require(YOLOV5N)
    auto = options_for("openvino", 2, model_cache=False)
    tool = load_backend("openvino", model, auto, warmup_runs=0)
    assert requests_in_flight(tool) == 1
    stage = load_backend("openvino", model, auto, warmup_runs=0, in_flight=True)
    try:
        assert requests_in_flight(stage) == 2
        tensors = [np.full(stage.input.shape, value, np.uint8) for value in (0, 200)]
        # The callback runs on OpenVINO's thread, around wait's return.
        _two_submitted_match_infer(stage, tool, tensors, rtol=1e-3, called=lambda ev: ev.wait(10))
    finally:
        stage.close()
        tool.close()


def test_onnxruntime_runs_frames_side_by_side_on_sessions_of_their_own():
    """``requests: 2`` in the daemon's inference stage: two sessions, the thread budget split
    (one thread each of two); two frames submitted before either is waited for give what
    ``infer`` gives, each in its own outputs. The tools get one session with every thread."""

    from edged.backends import requests_in_flight

    model = require(YOLOV5N)
    two = options_for("onnxruntime", 2, requests=2)
    tool = load_backend("onnxruntime", model, two, warmup_runs=0)
    assert requests_in_flight(tool) == 1
    stage = load_backend("onnxruntime", model, two, warmup_runs=0, in_flight=True)
    try:
        assert requests_in_flight(stage) == 2
        threads = [s.get_session_options().intra_op_num_threads
                   for s in stage._sessions]  # type: ignore[attr-defined]  # fmt: skip
        assert threads == [1, 1]
        rng = np.random.default_rng(0)
        tensors = [rng.integers(0, 255, stage.input.shape, dtype=np.uint8).astype(
            stage.input.dtype) for _ in range(2)]  # fmt: skip
        # on_done runs before the result is ready.
        outputs = _two_submitted_match_infer(stage, tool, tensors, rtol=1e-4,
                                             called=lambda ev: ev.is_set())  # fmt: skip
        busy = [stage.submit(t, out, lambda: None)  # type: ignore[attr-defined]
                for t, out in zip(tensors, outputs, strict=True)]  # fmt: skip
        with pytest.raises(BackendError, match="more than 2 frames"):
            stage.submit(tensors[0], outputs[0], lambda: None)  # type: ignore[attr-defined]
        for handle in busy:
            stage.wait(handle)  # type: ignore[attr-defined]
    finally:
        stage.close()
        tool.close()


def test_onnxruntime_outputs_of_unknown_shape_get_one_session_with_every_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Frames in flight write into the caller's arrays, so they need known output shapes; with
    a symbolic output dim ``requests: 2`` falls back to one session (not two, one unused)."""
    import onnx
    from onnx import TensorProto, helper

    from edged.backends import requests_in_flight

    graph = helper.make_graph(  # NonZero: as many columns as nonzero pixels, known per run
        [helper.make_node("NonZero", ["images"], ["where"]),
         helper.make_node("Cast", ["where"], ["out"], to=TensorProto.FLOAT)], "dynamic-out",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4, "n"])],
    )  # fmt: skip
    model = tmp_path / "dynamic.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    options = options_for("onnxruntime", 2, requests=2, graph_rewrites=False)
    backend = load_backend("onnxruntime", model, options, warmup_runs=1, in_flight=True)
    try:
        assert requests_in_flight(backend) == 1
        assert len(backend._sessions) == 1  # type: ignore[attr-defined]
        session = backend._sessions[0]  # type: ignore[attr-defined]
        assert session.get_session_options().intra_op_num_threads == 2
        assert "one session with every thread" in caplog.text
    finally:
        backend.close()
