"""The head finder on real exported graphs (YOLOv5n from ../shared, YOLOv8n built offline)."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from edged.backends.head_find import find_head, find_stem
from tests.tools.data import YOLOV5N, require, yolov8n_onnx


def _ops(model: onnx.ModelProto, names: tuple[str, ...]) -> set[str]:
    by_name = {n.name: n.op_type for n in model.graph.node}
    return {by_name[n] for n in names}


def test_yolov5n_head_is_everything_after_the_three_detect_convs() -> None:
    model = onnx.load(str(require(YOLOV5N)))
    head = find_head(model)
    assert head.boundary == ("/model.24/m.0/Conv", "/model.24/m.1/Conv", "/model.24/m.2/Conv")
    # The final Concat that mixes pixel boxes with 0–1 scores is the reason the head exists.
    assert "/model.24/Concat_3" in head.nodes
    assert "Conv" not in _ops(model, head.nodes)
    assert {"Sigmoid", "Pow", "Concat", "Reshape"} <= _ops(model, head.nodes)
    by_name = {n.name: n.op_type for n in model.graph.node}
    assert all(n.startswith("/model.24/") for n in head.nodes if by_name[n] != "Constant")


def test_levels_widen_the_float_region_by_rings_of_convs() -> None:
    model = onnx.load(str(require(YOLOV5N)))
    level0, level1 = find_head(model, 0), find_head(model, 1)
    assert set(level0.nodes) < set(level1.nodes)
    assert set(level0.boundary) <= set(level1.nodes)
    # Level 1 stops at the C3 output convs feeding the detect convs (through their SiLU).
    assert level1.boundary == (
        "/model.17/cv3/conv/Conv",
        "/model.20/cv3/conv/Conv",
        "/model.23/cv3/conv/Conv",
    )
    assert level1.op_types["Conv"] == 3


def test_yolov8n_walks_through_the_dfl_reduction_conv() -> None:
    model = onnx.load(str(yolov8n_onnx()))
    head = find_head(model)
    by_name = {n.name: n for n in model.graph.node}
    # Six branch convs (box cv2.* and class cv3.* per stride) bound the head ...
    assert len(head.boundary) == 6
    assert {name.rsplit("/", 2)[1][:3] for name in head.boundary} == {"cv2", "cv3"}
    # ... and the DFL's fixed 16→1 Conv plus its Softmax sit inside it.
    convs = [n for n in head.nodes if by_name[n].op_type == "Conv"]
    assert len(convs) == 1 and "dfl" in convs[0]
    assert "Softmax" in _ops(model, head.nodes)


def test_synthetic_graph_and_unnamed_nodes() -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
    concat = helper.make_node("Concat", ["c", "c"], ["y"], name="cat", axis=1)
    # A 4-channel Conv is learned: the walk stops there (only 1-channel reductions are crossed).
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], [0.0] * 12)
    graph = helper.make_graph(
        [conv, concat],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])],
        [weight],
    )
    head = find_head(helper.make_model(graph))
    assert (head.nodes, head.boundary) == (("cat",), ("conv",))
    graph.node[1].name = ""
    with pytest.raises(ValueError, match="no name"):
        find_head(helper.make_model(graph))


@pytest.mark.parametrize("which", ["yolov5n", "yolov8n"])
def test_the_stem_is_the_conv_reading_the_image(which: str) -> None:
    path = require(YOLOV5N) if which == "yolov5n" else yolov8n_onnx()
    model = onnx.load(str(path))
    stem = find_stem(model)
    assert stem == ("/model.0/conv/Conv",)
    conv = next(n for n in model.graph.node if n.name == stem[0])
    assert conv.input[0] == model.graph.input[0].name  # it reads the image itself


def test_no_stem_when_no_conv_reads_few_channels() -> None:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 8, 1, 1], [0.0] * 32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [weight],
    )
    assert find_stem(helper.make_model(graph)) == ()


def test_depthwise_convs_deeper_in_are_not_the_stem() -> None:
    stem_w = helper.make_tensor("w0", TensorProto.FLOAT, [8, 3, 3, 3], [0.0] * 216)
    depthwise_w = helper.make_tensor("w1", TensorProto.FLOAT, [8, 1, 3, 3], [0.0] * 72)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w0"], ["a"], name="stem"),
            helper.make_node("Conv", ["a", "w1"], ["y"], name="depthwise", group=8),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])],
        [stem_w, depthwise_w],
    )
    assert find_stem(helper.make_model(graph)) == ("stem",)
