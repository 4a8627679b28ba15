"""What the load-time rewrites and the model tools share about an ONNX graph: its data inputs,
and two edits (replacing its node list, dropping initializers).

The edits copy what they keep: protobuf messages taken from a repeated field do not survive clearing
that field.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx


def data_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: ``graph.input`` less the initializers that older exports
    list there too."""
    initializers = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in initializers]


def replace_nodes(graph: onnx.GraphProto, nodes: Iterable[onnx.NodeProto]) -> None:
    """Make ``nodes`` (which may be the graph's own) the graph's node list, in this order."""
    kept = []
    for node in nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        kept.append(copy)
    del graph.node[:]
    graph.node.extend(kept)


def drop_initializers(graph: onnx.GraphProto, names: set[str]) -> None:
    """Remove these initializers, and their entries in ``graph.input``: older exports list
    initializers as inputs too, and a stale one would become a required input."""
    if not any(t.name in names for t in graph.initializer):
        return
    kept = []
    for tensor in graph.initializer:
        if tensor.name not in names:
            copy = onnx.TensorProto()
            copy.CopyFrom(tensor)
            kept.append(copy)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for value in [i for i in graph.input if i.name in names]:
        graph.input.remove(value)
