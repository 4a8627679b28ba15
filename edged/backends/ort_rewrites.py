"""Exact graph rewrites for patterns ONNX Runtime's CPU provider runs slowly.

ORT's own optimiser fuses what it knows; these are the patterns the profiler shows it does not.
Each rewrite gives the same results (float rounding aside) and is applied in memory when a
model loads, so the file on disk, its hash and its metadata stay as they were.

``Softmax`` over an inner axis: ORT computes it element-strided, about 6 ms for YOLOv8's DFL
(1×16×4×8400, axis 1) on a 2-core Xeon — 13 % of the whole FP32 model and a fifth of the INT8
one, whose head stays in float. Moving the axis last with a ``Transpose`` on each side (ORT
merges the first into the Transpose already feeding the DFL) costs under 1 ms.

A float 1×3×H×W image input becomes a uint8 1×H×W×3 one (Transpose → Cast → Mul by 1/255 in
front of the graph, the same arithmetic as the daemon's own normalisation, so outputs are
bit-identical): the letterbox then writes 1.2 MB of bytes instead of 4.9 MB of floats
(0.47 → 0.14 ms per 720p frame), and ORT does the conversion in its threads (+0.1–0.3 ms).

A ``Conv`` (optionally followed by SiLU, ``x * Sigmoid(x)``) whose only use is a channel
``Split`` becomes one Conv (+ SiLU) per part, with the weights split the same way: YOLOv8's C2f
blocks. ORT's blocked-channel (NCHWc) Conv kernels cannot feed a ``Split``, so each one cost a
layout reorder back and forth; the split Convs feed their consumers directly. Outputs are
bit-identical; YOLOv8n FP32 −1.5 to −1.9 ms (of ~48). Quantized graphs (weights behind
DequantizeLinear) are left alone.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edged.backends.graph_edit import data_inputs, drop_initializers, replace_nodes
from edged.backends.head_cut import cut_detect_head

log = logging.getLogger(__name__)

# Softmax's ``axis`` means "this axis" from opset 13; before, it flattened the trailing axes.
_SOFTMAX_AXIS_OPSET = 13


@dataclass(frozen=True)
class RewriteReport:
    softmax_moved_last: tuple[str, ...] = ()
    uint8_input: str = ""  # the input now fed uint8 NHWC
    convs_split: tuple[str, ...] = ()  # Convs whose channel Split became one Conv per part
    head_cut: str = ""  # the YOLO head kind decoded outside the model (see head_cut)

    @property
    def changed(self) -> bool:
        return bool(
            self.softmax_moved_last or self.uint8_input or self.convs_split or self.head_cut
        )

    def describe(self) -> str:
        parts = []
        if self.softmax_moved_last:
            parts.append("Softmax moved to the last axis at " + ", ".join(self.softmax_moved_last))
        if self.uint8_input:
            parts.append(f"input {self.uint8_input} takes uint8 NHWC (normalised in the graph)")
        if self.convs_split:
            parts.append(f"{len(self.convs_split)} Conv → Split pairs made one Conv per part")
        if self.head_cut:
            parts.append(f"{self.head_cut} head decoded in postprocess (cut from the graph)")
        return "; ".join(parts)


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    ranks: dict[str, int] = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        tensor = info.type.tensor_type
        if tensor.HasField("shape"):
            ranks[info.name] = len(tensor.shape.dim)
    return ranks


def _axis(node: onnx.NodeProto, default: int = -1) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), default)


def move_softmax_axis_last(model: onnx.ModelProto) -> RewriteReport:
    """Rewrite, in place, every inner-axis ``Softmax`` as Transpose → Softmax(-1) → Transpose."""
    if _default_opset(model) < _SOFTMAX_AXIS_OPSET:
        return RewriteReport()
    if not any(n.op_type == "Softmax" and _axis(n) != -1 for n in model.graph.node):
        return RewriteReport()
    ranks = _ranks(model)
    moved: list[str] = []
    rewritten: list[onnx.NodeProto] = []
    for node in model.graph.node:
        rank = ranks.get(node.input[0], 0) if node.op_type == "Softmax" else 0
        if rank == 0 or _axis(node) % rank == rank - 1:
            kept = onnx.NodeProto()
            kept.CopyFrom(node)  # survives the clearing of the graph's node list below
            rewritten.append(kept)
            continue
        axis = _axis(node) % rank
        perm = [d for d in range(rank) if d != axis] + [axis]
        inverse = [perm.index(d) for d in range(rank)]
        name, source, result = node.name or node.output[0], node.input[0], node.output[0]
        rewritten += [
            helper.make_node(
                "Transpose", [source], [f"{name}/last_in"], perm=perm, name=f"{name}/to_last"
            ),
            helper.make_node(
                "Softmax", [f"{name}/last_in"], [f"{name}/last_out"], axis=-1, name=name
            ),
            helper.make_node(
                "Transpose", [f"{name}/last_out"], [result], perm=inverse, name=f"{name}/from_last"
            ),
        ]
        moved.append(name)
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(rewritten)
    return RewriteReport(softmax_moved_last=tuple(moved))


def _split_sizes(split: onnx.NodeProto, constants: _Constants) -> list[int] | None:
    """The part sizes of a channel (axis 1) Split, when they are constant."""
    if _axis(split, default=0) != 1:
        return None
    if len(split.input) > 1 and split.input[1]:  # opset 13+: an input
        sizes = constants.get(split.input[1])
        return None if sizes is None else [int(v) for v in sizes.reshape(-1)]
    attribute = next((a for a in split.attribute if a.name == "split"), None)  # before 13
    return None if attribute is None else list(attribute.ints)


class _Constants:
    """Initializers as arrays, converted only when asked for (not every weight of the model)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self._tensors = {t.name: t for t in graph.initializer}

    def get(self, name: str) -> np.ndarray | None:
        tensor = self._tensors.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)


def split_conv_outputs(model: onnx.ModelProto) -> tuple[str, ...]:
    """Rewrite, in place, Conv [→ SiLU] → channel Split as one Conv [→ SiLU] per part."""
    graph = model.graph
    constants = _Constants(graph)
    producer = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for output in graph.output:
        uses[output.name] = uses.get(output.name, 0) + 1
    replaced: dict[int, list[onnx.NodeProto]] = {}  # id(Conv) → its replacement nodes
    dropped: set[int] = set()
    unused: set[str] = set()
    done: list[str] = []
    for split in (n for n in graph.node if n.op_type == "Split"):
        sizes = _split_sizes(split, constants)
        chain = _conv_chain(producer.get(split.input[0]), producer, uses)
        if sizes is None or chain is None or len(sizes) != len(split.output):
            continue
        conv, activation = chain
        weight = constants.get(conv.input[1])
        bias = constants.get(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if weight is None or sum(sizes) != weight.shape[0] or uses[conv.input[1]] != 1:
            continue
        name = conv.name or conv.output[0]
        nodes: list[onnx.NodeProto] = []
        start = 0
        for k, (size, result) in enumerate(zip(sizes, split.output, strict=True)):
            part = f"{name}/part{k}"
            part_weight = numpy_helper.from_array(weight[start : start + size], f"{part}/W")
            graph.initializer.append(part_weight)
            inputs = [conv.input[0], part_weight.name]
            if bias is not None:
                part_bias = numpy_helper.from_array(bias[start : start + size], f"{part}/B")
                graph.initializer.append(part_bias)
                inputs.append(part_bias.name)
            out = result if not activation else f"{part}/conv"
            piece = helper.make_node("Conv", inputs, [out], name=part)
            piece.attribute.extend(conv.attribute)
            nodes.append(piece)
            if activation:
                nodes += [
                    helper.make_node("Sigmoid", [out], [f"{part}/sig"], name=f"{part}/sigmoid"),
                    helper.make_node("Mul", [out, f"{part}/sig"], [result], name=f"{part}/silu"),
                ]
            start += size
        replaced[id(conv)] = nodes
        dropped.update(id(n) for n in (split, *activation))
        # Dropped below unless another node shares them (ORT warns of each one left behind).
        unused.update(conv.input[1:], split.input[1:])
        done.append(name)
    if done:
        kept: list[onnx.NodeProto] = []
        for node in graph.node:
            if id(node) in replaced:
                kept += replaced[id(node)]
            elif id(node) not in dropped:
                kept.append(node)
        replace_nodes(graph, kept)
        drop_initializers(graph, unused - {name for node in kept for name in node.input})
    return tuple(done)


def _conv_chain(
    node: onnx.NodeProto | None, producer: dict[str, onnx.NodeProto], uses: dict[str, int]
) -> tuple[onnx.NodeProto, tuple[onnx.NodeProto, ...]] | None:
    """``node`` as the end of Conv or Conv → SiLU whose results feed only what follows."""
    if node is None:
        return None
    if node.op_type == "Conv":
        return (node, ()) if uses.get(node.output[0]) == 1 else None
    if node.op_type != "Mul" or len(node.input) != 2:
        return None
    parents = [producer.get(name) for name in node.input]
    sigmoid = next((p for p in parents if p is not None and p.op_type == "Sigmoid"), None)
    conv = producer.get(sigmoid.input[0]) if sigmoid is not None else None
    if conv is None or conv.op_type != "Conv":
        return None
    if set(node.input) != {conv.output[0], sigmoid.output[0]}:
        return None
    private = uses.get(conv.output[0]) == 2 and uses.get(sigmoid.output[0]) == 1
    return (conv, (sigmoid, node)) if private and uses.get(node.output[0]) == 1 else None


def _image_input(model: onnx.ModelProto) -> tuple[onnx.ValueInfoProto, int, int] | None:
    """The single float 1×3×H×W input (static H, W), or None."""
    inputs = data_inputs(model.graph)
    if len(inputs) != 1:
        return None
    tensor = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor.shape.dim]
    if tensor.elem_type != onnx.TensorProto.FLOAT or len(dims) != 4 or dims[:2] != [1, 3]:
        return None
    if dims[2] <= 0 or dims[3] <= 0:
        return None
    return inputs[0], dims[2], dims[3]


def _has_subgraphs(graph: onnx.GraphProto) -> bool:
    graph_kinds = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    return any(a.type in graph_kinds for n in graph.node for a in n.attribute)


def feed_uint8_nhwc(model: onnx.ModelProto) -> str:
    """Rewrite, in place, a float 1×3×H×W input as uint8 1×H×W×3 normalised inside the graph.

    The input keeps its name (so callers bind it as before); returns that name, or "" when the
    model has no such input.
    """
    found = _image_input(model)
    if found is None:
        return ""
    original, height, width = found
    graph, name = model.graph, original.name
    if any(o.name == name for o in graph.output) or _has_subgraphs(graph):
        # An input passed straight through, or read inside If/Loop bodies: leave it alone.
        return ""
    floats = f"{name}/float_nchw"
    for node in graph.node:
        for i, tensor in enumerate(node.input):
            if tensor == name:
                node.input[i] = floats
    scale = numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), f"{name}/scale")
    graph.initializer.append(scale)
    prefix = [
        helper.make_node("Transpose", [name], [f"{name}/u8_nchw"], perm=[0, 3, 1, 2],
                         name=f"{name}/to_nchw"),
        helper.make_node("Cast", [f"{name}/u8_nchw"], [f"{name}/f_nchw"],
                         to=onnx.TensorProto.FLOAT, name=f"{name}/to_float"),
        helper.make_node("Mul", [f"{name}/f_nchw", scale.name], [floats], name=f"{name}/scale"),
    ]  # fmt: skip
    for position, node in enumerate(prefix):
        graph.node.insert(position, node)
    index = list(graph.input).index(original)
    replacement = helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, [1, height, width, 3])
    graph.input.remove(original)
    graph.input.insert(index, replacement)
    return name


def rewrite_for_ort(model: onnx.ModelProto, cut_head: bool = True) -> RewriteReport:
    """Every rewrite in this module, in place (the head cut last: it checks the head as the
    other rewrites left it)."""
    moved = move_softmax_axis_last(model).softmax_moved_last
    split = split_conv_outputs(model)
    uint8_input = feed_uint8_nhwc(model)
    head = _try_cut_head(model) if cut_head else ""
    if head:  # the DFL Softmax went with the head: do not report it as rewritten
        kept = {node.name for node in model.graph.node}
        moved = tuple(name for name in moved if name in kept)
    return RewriteReport(softmax_moved_last=moved, uint8_input=uint8_input, convs_split=split,
                         head_cut=head)  # fmt: skip


def _try_cut_head(model: onnx.ModelProto) -> str:
    """The head cut, which must never cost the other rewrites: any failure keeps the head.

    No copy of the model is needed (the rewrite helper's memory): the cut changes the model
    only in its last step, after every check has passed."""
    try:
        return cut_detect_head(model)
    except Exception as exc:  # e.g. unnamed nodes find_head refuses, a graph ORT rejects
        print(f"head kept in the model: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ""


def rewritten_model(path: Path) -> tuple[bytes, RewriteReport] | None:
    """``path`` with every rewrite applied, serialised; None when nothing changed or the file
    is not for us to touch (external data, unreadable: ORT then reports on the original)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a readable model: ORT's own load error says so, once
        return None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        return None
    try:
        report = rewrite_for_ort(model)
    except Exception as exc:  # a graph shape inference rejects, or one the rewrites trip on
        print(f"no graph rewrite: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    return (model.SerializeToString(), report) if report.changed else None


def main(argv: list[str]) -> int:
    """``python -m edged.backends.ort_rewrites SOURCE TARGET``: write TARGET only if changed."""
    source, target = Path(argv[0]), Path(argv[1])
    result = rewritten_model(source)
    if result is not None:
        data, report = result
        target.write_bytes(data)
        print(report.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
