"""Find a detector's head in an ONNX graph: static quantization leaves it in float, and the
daemon's load-time rewrite (:mod:`edged.backends.head_cut`) cuts the model there.

Why: the head decodes boxes (pixel coordinates, up to the input size) and scores (0–1) and
concatenates them into one tensor. One int8 scale cannot represent both, so a fully quantized
YOLO loses every box (mAP 0.000 on yolov5n). The head is cheap, so keeping it float costs little.

Definition: walking back from every graph output, the head is every node met before the first
``Conv`` on that path. A ``Conv`` with a single output channel and no bias is a fixed reduction
(YOLOv8's DFL integral over 16 bins), not a learned layer, so the walk passes through it.
``levels`` extends the float region past that many more rings of ``Conv`` layers (level 1 also
keeps the last Convs and the activations feeding them in float).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import onnx

from edged.backends.graph_edit import data_inputs


@dataclass(frozen=True)
class HeadSplit:
    """``nodes``: names to keep in float; ``boundary``: the Convs where the float region starts."""

    nodes: tuple[str, ...]
    boundary: tuple[str, ...]
    op_types: dict[str, int]


def _is_fixed_reduction(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> bool:
    if node.op_type != "Conv" or len(node.input) > 2 or node.input[1] not in initializers:
        return False
    weight = initializers[node.input[1]]
    return len(weight.dims) >= 1 and weight.dims[0] == 1


def _named_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    unnamed = [n for n in graph.node if not n.name]
    if unnamed:
        # Quantizer exclusion lists are by node name; an unnamed node could not be excluded.
        raise ValueError(
            f"{len(unnamed)} nodes have no name (e.g. {unnamed[0].op_type}); "
            "run ORT's quant_pre_process or onnx-simplifier first"
        )
    return list(graph.node)


def find_head(model: onnx.ModelProto, levels: int = 0) -> HeadSplit:
    """The nodes between the last learned ``Conv`` layers and the outputs (see module doc)."""
    graph = model.graph
    nodes = _named_nodes(graph)
    initializers = {t.name: t for t in graph.initializer}
    producer = {out: n for n in nodes for out in n.output if out}
    head: dict[str, onnx.NodeProto] = {}
    boundary: dict[str, onnx.NodeProto] = {}

    def walk(start_tensors: list[str]) -> None:
        queue = deque(start_tensors)
        seen: set[str] = set()
        while queue:
            tensor = queue.popleft()
            node = producer.get(tensor)
            if node is None or node.name in seen or node.name in head:
                continue
            seen.add(node.name)
            if node.op_type == "Conv" and not _is_fixed_reduction(node, initializers):
                boundary[node.name] = node
                continue
            head[node.name] = node
            queue.extend(t for t in node.input if t and t not in initializers)

    walk([o.name for o in graph.output])
    for _ in range(levels):
        ring = list(boundary.values())
        boundary.clear()
        for conv in ring:
            head[conv.name] = conv
        walk([t for conv in ring for t in conv.input if t and t not in initializers])
    order = {n.name: i for i, n in enumerate(nodes)}
    names = tuple(sorted(head, key=order.__getitem__))
    op_types: dict[str, int] = {}
    for name in names:
        op_types[head[name].op_type] = op_types.get(head[name].op_type, 0) + 1
    return HeadSplit(names, tuple(sorted(boundary, key=order.__getitem__)), op_types)


STEM_MAX_CHANNELS = 4


def find_stem(model: onnx.ModelProto) -> tuple[str, ...]:
    """The Convs that read the image input itself (≤ 4 input channels).

    Why keep them float: with 3 input channels an int8 convolution packs badly, and ONNX
    Runtime's runs slower than the FP32 one (yolov5n's 6×6 stem: 3.7 vs 1.8 ms; YOLOv8n's 3×3:
    1.7 vs 0.9 ms on the 2-core AVX-512 VNNI VM). Only the Conv: its activation stays int8,
    which measured both faster and more accurate on yolov5n than keeping the SiLU float too
    (mAP50-95 −0.4 vs −1.0 point; all-int8: −0.5).
    """
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    images = {i.name for i in data_inputs(graph)}
    stem = []
    for node in _named_nodes(graph):
        if node.op_type != "Conv" or node.input[0] not in images:
            continue  # a depthwise Conv deeper in has 1 input channel per group: not a stem
        weight = initializers.get(node.input[1])
        if weight is not None and len(weight.dims) == 4 and weight.dims[1] <= STEM_MAX_CHANNELS:
            stem.append(node.name)
    return tuple(stem)
