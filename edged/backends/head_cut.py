"""Cut a YOLO model at its detection head, when the cut is proven exact (a load-time rewrite).

The head (see :mod:`edged.postprocess.raw_heads` for why) is found as the nodes after the last
learned Convs (:func:`edged.backends.head_find.find_head`). Its parameters — strides from the
feature map sizes, YOLOv5's anchors by running the head on all-zero logits — are then checked:
the head itself runs in ONNX Runtime on random logits and must agree with edged's decoder to
1e-3, or the model stays whole. So an unknown head variant, a quantized boundary or a layout
edged does not know costs nothing but the speed-up. Runs in the rewrite helper process (it
needs onnx).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from edged.backends.graph_edit import data_inputs, drop_initializers, replace_nodes
from edged.backends.head_find import find_head
from edged.postprocess.raw_heads import (
    HEAD_METADATA_KEY,
    YOLOV5,
    YOLOV8,
    HeadScale,
    RawHead,
    dense_output,
)

_BOX_TOLERANCE = 1e-3  # of the largest box coordinate (pixels reach ~1500 on random logits)
_SCORE_TOLERANCE = 1e-4  # absolute: scores are probabilities


def _static_dims(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    dims = value.type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
        return None
    return tuple(d.dim_value for d in dims)


def _input_height(model: onnx.ModelProto) -> int | None:
    """The image height: 1×3×H×W float, or 1×H×W×3 uint8 after :func:`feed_uint8_nhwc`."""
    inputs = data_inputs(model.graph)
    dims = _static_dims(inputs[0]) if len(inputs) == 1 else None
    if dims is None or len(dims) != 4:
        return None
    return dims[2] if dims[1] == 3 else dims[1]


def _head_model(model: onnx.ModelProto, inputs: list[str], output: str) -> onnx.ModelProto:
    return onnx.utils.Extractor(model).extract_model(inputs, [output])


def _plan(
    output_dims: tuple[int, ...], boundary: list[tuple[str, tuple[int, ...]]], height: int
) -> tuple[RawHead, list[str]] | None:
    """The head's layout and the boundary tensors in the order its decoder reads them."""
    if len(output_dims) != 3 or not boundary:
        return None
    by_size: dict[tuple[int, int], list[tuple[str, int]]] = {}
    for name, dims in boundary:
        if len(dims) != 4 or dims[0] != 1:
            return None
        by_size.setdefault((dims[2], dims[3]), []).append((name, dims[1]))
    sizes = sorted(by_size, reverse=True)  # stride 8 first, as the heads concatenate them
    groups = [by_size[s] for s in sizes]
    if all(len(g) == 1 for g in groups) and output_dims[2] > 5:
        per_anchor = output_dims[2]
        if any(g[0][1] % per_anchor for g in groups):
            return None
        scales = [
            HeadScale(h, w, height / h, ((0.0, 0.0),) * (g[0][1] // per_anchor))
            for (h, w), g in zip(sizes, groups, strict=True)
        ]
        head = RawHead(YOLOV5, per_anchor - 5, tuple(scales))
        return head, [g[0][0] for g in groups]
    if all(len(g) == 2 for g in groups) and output_dims[1] > 4:
        classes = output_dims[1] - 4
        order: list[str] = []
        reg_max = 0
        for group in groups:
            box = [t for t in group if t[1] != classes] or group[:1]
            cls = [t for t in group if t is not box[0]]
            if box[0][1] % 4:
                return None
            reg_max = box[0][1] // 4
            order += [box[0][0], cls[0][0]]
        scales = [HeadScale(h, w, height / h) for h, w in sizes]
        return RawHead(YOLOV8, classes, tuple(scales), reg_max), order
    return None


def _with_anchors(head: RawHead, session, names: list[str], shapes: list[tuple]) -> RawHead:
    """YOLOv5 anchors in pixels: at zero logits the head's w, h are exactly the anchors."""
    if head.kind != YOLOV5:
        return head
    zeros = {n: np.zeros(s, np.float32) for n, s in zip(names, shapes, strict=True)}
    rows = session.run(None, zeros)[0][0]
    scales, offset = [], 0
    for scale in head.scales:
        cells = scale.height * scale.width
        anchors = tuple(
            (float(rows[offset + a * cells, 2]), float(rows[offset + a * cells, 3]))
            for a in range(len(scale.anchors))
        )
        scales.append(HeadScale(scale.height, scale.width, scale.stride, anchors))
        offset += cells * len(scale.anchors)
    return RawHead(head.kind, head.num_classes, tuple(scales), head.reg_max)


def _verified(head_model: onnx.ModelProto, head: RawHead, names: list[str], shapes: list[tuple]):
    """The head with its parameters when edged's decoder reproduces it, else None."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        head_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    head = _with_anchors(head, session, names, shapes)
    rng = np.random.default_rng(0)
    probes = [(rng.standard_normal(s) * 3).astype(np.float32) for s in shapes]
    reference = session.run(None, dict(zip(names, probes, strict=True)))[0]
    ours = dense_output(probes, head)
    if ours.shape != reference.shape:
        return None
    return head if _agree(ours, reference, head.kind) else None


def _agree(ours: np.ndarray, reference: np.ndarray, kind: str) -> bool:
    """Boxes to a fraction of their scale, scores (objectness, classes) to 1e-4 absolute: one
    tolerance for both would let a head with different scores pass on the boxes' scale."""
    rows = (ours[0], reference[0]) if kind == YOLOV5 else (ours[0].T, reference[0].T)
    box_scale = max(1.0, float(np.abs(rows[1][:, :4]).max()))
    boxes = np.allclose(rows[0][:, :4], rows[1][:, :4], rtol=0, atol=_BOX_TOLERANCE * box_scale)
    scores = np.allclose(rows[0][:, 4:], rows[1][:, 4:], rtol=0, atol=_SCORE_TOLERANCE)
    return bool(boxes and scores)


def _prune(graph: onnx.GraphProto, outputs: list[onnx.ValueInfoProto]) -> None:
    """Make ``outputs`` the graph's outputs and drop what no longer leads to them."""
    producer = {out: node for node in graph.node for out in node.output}
    needed: set[int] = set()
    stack = [o.name for o in outputs]
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(node.input)
    replace_nodes(graph, [node for node in graph.node if id(node) in needed])
    read = {name for node in graph.node for name in node.input}
    drop_initializers(graph, {t.name for t in graph.initializer if t.name not in read})
    del graph.output[:]
    graph.output.extend(outputs)


def cut_detect_head(model: onnx.ModelProto) -> str:
    """Cut ``model`` (in place) at its YOLOv5/YOLOv8 head when edged's decoder provably does the
    same; records the decoder's parameters in the metadata. Returns the head kind, or "".

    The model is changed only by the last step, after every check: a refusal or an exception
    leaves it as it was (the caller relies on that instead of working on a copy)."""
    graph = model.graph
    height = _input_height(model)
    if height is None or len(graph.output) != 1:
        return ""
    output_dims = _static_dims(graph.output[0])
    if output_dims is None:
        return ""
    split = find_head(model, 0)
    nodes = {node.name: node for node in graph.node}
    boundary_names = [nodes[name].output[0] for name in split.boundary]
    inferred = onnx.shape_inference.infer_shapes(model)
    values = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    boundary = []
    for name in boundary_names:
        dims = _static_dims(values[name]) if name in values else None
        if dims is None or values[name].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            return ""
        boundary.append((name, dims))
    plan = _plan(output_dims, boundary, height)
    if plan is None:
        return ""
    head, order = plan
    shapes = [dict(boundary)[name] for name in order]
    head_model = _head_model(inferred, order, graph.output[0].name)
    head = _verified(head_model, head, order, shapes)
    if head is None:
        return ""
    outputs = [
        helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(dims))
        for name, dims in zip(order, shapes, strict=True)
    ]
    _prune(graph, outputs)
    model.metadata_props.add(key=HEAD_METADATA_KEY, value=head.to_json())
    return head.kind
