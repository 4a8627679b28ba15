"""YOLO heads decoded outside the model: same detections as the whole model, or no cut at all."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edged.backends.head_cut import cut_detect_head
from edged.config import OnnxRuntimeOptions
from edged.postprocess.decoders import DecodeParams, OutputLayout
from edged.postprocess.raw_heads import (
    HEAD_METADATA_KEY,
    YOLOV5,
    HeadScale,
    RawHead,
    candidates,
    raw_head_of,
)
from edged.tools.runner import ModelRunner
from tests.tools.data import COCO_VAL, YOLOV5N, require, yolov8n_onnx

# An untrained YOLOv8n scores every class near 1e-5: thresholds scaled down to keep candidates.
PREDICT = {"yolov5n": DecodeParams(), "yolov8n": DecodeParams(conf_threshold=1e-4)}
VALIDATE = {
    "yolov5n": DecodeParams(conf_threshold=0.001, iou_threshold=0.7, multi_label=True),
    "yolov8n": DecodeParams(conf_threshold=5e-5, iou_threshold=0.7, multi_label=True),
}


def _images(count: int) -> list[np.ndarray]:
    files = sorted((require(COCO_VAL) / "images").rglob("*.jpg"))[:count]
    return [cv2.imread(str(f)) for f in files]


@pytest.mark.parametrize("settings", [PREDICT, VALIDATE], ids=["predict", "validate"])
@pytest.mark.parametrize("model", ["yolov5n", "yolov8n"])
def test_a_cut_model_detects_what_the_whole_model_detects(model: str, settings) -> None:
    params = settings[model]
    path = require(YOLOV5N) if model == "yolov5n" else yolov8n_onnx()
    cut = ModelRunner(path, OnnxRuntimeOptions(intra_op_threads=2), params)
    whole = ModelRunner(path, OnnxRuntimeOptions(intra_op_threads=2, graph_rewrites=False), params)
    assert cut.layout is OutputLayout.RAW_HEAD and whole.layout is not OutputLayout.RAW_HEAD
    total = 0
    for image in _images(4):
        ours, theirs = cut.detect(image), whole.detect(image)
        assert len(ours) == len(theirs)
        np.testing.assert_array_equal(ours.class_ids, theirs.class_ids)
        np.testing.assert_allclose(ours.scores, theirs.scores, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=0.02)  # pixels
        total += len(ours)
    assert total > 0  # the comparison compared something


def _bend_grid(model: onnx.ModelProto) -> None:
    """Make YOLOv5's first grid constant non-uniform: a head edged's decoder does not match."""
    for node in model.graph.node:
        if node.op_type == "Constant" and node.name == "/model.24/Constant_2":
            grid = numpy_helper.to_array(node.attribute[0].t).copy()
            grid[..., 0] *= 1.01
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(grid))
            return
    raise AssertionError("yolov5n's head changed: update the test")


def test_a_head_the_decoder_does_not_reproduce_stays_in_the_model() -> None:
    model = onnx.load(str(require(YOLOV5N)))
    assert cut_detect_head(onnx.load(str(require(YOLOV5N)))) == YOLOV5  # the real one is cut
    _bend_grid(model)
    before = model.SerializeToString()
    assert cut_detect_head(model) == ""
    assert model.SerializeToString() == before
    assert raw_head_of({p.key: p.value for p in model.metadata_props}) is None


def test_yolov5_anchors_are_read_from_the_head() -> None:
    model = onnx.load(str(require(YOLOV5N)))
    cut_detect_head(model)
    head = raw_head_of({p.key: p.value for p in model.metadata_props})
    assert head is not None and head.num_classes == 80
    assert [s.stride for s in head.scales] == [8.0, 16.0, 32.0]
    assert head.scales[0].anchors == ((10.0, 13.0), (16.0, 30.0), (33.0, 23.0))  # YOLOv5 P3
    assert [o.name for o in model.graph.output] == [
        f"/model.24/m.{i}/Conv_output_0" for i in range(3)
    ]
    assert HEAD_METADATA_KEY in {p.key for p in model.metadata_props}


def test_head_parameters_survive_json() -> None:
    head = RawHead(YOLOV5, 2, (HeadScale(4, 6, 8.0, ((1.5, 2.0),)), HeadScale(2, 3, 16.0)))
    assert RawHead.from_json(head.to_json()) == head


def test_thresholds_at_the_ends_keep_all_or_nothing() -> None:
    head = RawHead(YOLOV5, 2, (HeadScale(2, 3, 8.0, ((10.0, 12.0),)),))
    raw = np.random.default_rng(0).standard_normal((1, 7, 2, 3)).astype(np.float32)
    boxes, scores = candidates([raw], head, 0.0)
    assert boxes.shape == (6, 4) and scores.shape == (6, 2)
    boxes, scores = candidates([raw], head, 1.0)
    assert boxes.shape == (0, 4) and scores.shape == (0, 2)


def test_a_head_whose_scores_differ_stays_even_when_its_boxes_agree() -> None:
    """Scores are 0–1, boxes ~1000 px: one tolerance on the boxes' scale would pass any scores."""
    model = onnx.load(str(require(YOLOV5N)))
    first = next(n for n in model.graph.node if n.name == "/model.24/Split")
    damped = helper.make_node("Mul", [first.output[2], "damp"], ["damped_conf"], name="damp")
    for node in model.graph.node:
        if node.op_type == "Concat" and first.output[2] in node.input:
            node.input[list(node.input).index(first.output[2])] = "damped_conf"
    model.graph.initializer.append(numpy_helper.from_array(np.array(0.99, np.float32), "damp"))
    model.graph.node.insert(list(model.graph.node).index(first) + 1, damped)
    assert cut_detect_head(model) == ""


def test_a_failing_cut_costs_no_other_rewrite() -> None:
    from edged.backends.ort_rewrites import rewrite_for_ort

    model = onnx.load(str(require(YOLOV5N)))
    for node in model.graph.node:
        if node.op_type == "Reshape":
            node.name = ""  # find_head refuses unnamed nodes (ORT's quantize_dynamic leaves them)
    without_cut = onnx.ModelProto()
    without_cut.CopyFrom(model)
    report = rewrite_for_ort(model)
    assert report.uint8_input == "images" and report.head_cut == ""
    # The other rewrites applied, and nothing of a half-done cut left behind.
    rewrite_for_ort(without_cut, cut_head=False)
    assert model.SerializeToString() == without_cut.SerializeToString()


def test_initializers_listed_as_inputs_do_not_become_inputs_after_the_cut() -> None:
    import onnxruntime as ort

    model = onnx.load(str(yolov8n_onnx()))  # its head holds initializers (YOLOv5's: Constants)
    model.graph.input.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in model.graph.initializer
    )  # as older exporters wrote them
    assert cut_detect_head(model) == "yolov8"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]


def test_a_label_count_that_does_not_fit_the_head_is_refused() -> None:
    from edged.tools.errors import ToolError

    with pytest.raises(ToolError, match="does not fit 3 classes"):
        ModelRunner(require(YOLOV5N), OnnxRuntimeOptions(intra_op_threads=1), PREDICT["yolov5n"],
                    num_classes=3)  # fmt: skip


def test_extreme_dfl_logits_stay_finite() -> None:
    from edged.postprocess.raw_heads import yolov8_rows

    box = np.zeros((1, 64, 1, 1), np.float32)
    box[0, [3, 16 + 5, 32 + 0, 48 + 15], 0, 0] = [500.0, 300.0, 200.0, 1000.0]  # one bin a side
    rows = yolov8_rows(box, np.zeros((1, 2, 1, 1), np.float32), HeadScale(1, 1, 8.0), 16)
    assert np.isfinite(rows).all()
    # left 3, top 5, right 0, bottom 15 bins from the cell centre (0.5, 0.5); stride 8 px.
    x1, y1, x2, y2 = 0.5 - 3, 0.5 - 5, 0.5 + 0, 0.5 + 15
    expected = [(x1 + x2) / 2 * 8, (y1 + y2) / 2 * 8, (x2 - x1) * 8, (y2 - y1) * 8]
    np.testing.assert_allclose(rows[0, :4], expected, atol=1e-4)
