"""A copy of a fixed-batch ONNX detector whose batch axis is symbolic (``batch``).

For ``edged bench --batch``: it measures whether a batch of several cameras' frames costs less
per frame than one call each, which needs a model that takes a batch. An Ultralytics export
with ``dynamic=True`` has one; a model exported with a fixed ``1×3×H×W`` input (like the shared
yolov5n) bakes the batch size into its input, outputs and the target shapes of its Reshapes
(YOLOv5's head: ``[1, 3, 85, 80, 80]``). This rewrites those, then checks the result with ONNX
Runtime: each frame of a batch of two must come out as it does alone. A graph that keeps the
batch size anywhere else fails that check with an error naming it, and nothing is written.

    python -m edged.tools.batch_axis yolov5n.onnx yolov5n-batch.onnx
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from edged.backends.graph_edit import data_inputs
from edged.tools.errors import ToolError

BATCH_DIM = "batch"
# Each frame of a batch must match the frame alone this closely (float32 sums of another order).
PARITY_TOLERANCE = 1e-3


def _set_batch_dim(value: onnx.ValueInfoProto) -> None:
    dims = value.type.tensor_type.shape.dim
    if dims:
        dims[0].Clear()
        dims[0].dim_param = BATCH_DIM


def _shape_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Constant tensors by output name: initializers and Constant nodes' values."""
    found = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    found[node.output[0]] = attr.t
    return found


def symbolic_batch(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``model`` (changed in place) with a symbolic batch axis; also the Reshapes rewritten.

    A Reshape target ``[1, ...]`` with no ``-1`` becomes ``[-1, ...]`` (the batch, whatever it
    is); a target that already has a ``-1`` cannot take a second one and is refused."""
    graph = model.graph
    inputs = data_inputs(graph)
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise ToolError("expected one 4-D image input")
    constants = _shape_tensors(graph)
    rewritten = 0
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in constants:
            continue
        tensor = constants[node.input[1]]
        target = numpy_helper.to_array(tensor)
        if target.ndim != 1 or target.size == 0 or target[0] != 1:
            continue
        if (target == -1).any():
            raise ToolError(
                f"Reshape {node.name or node.output[0]} has the batch fixed at 1 and a -1 "
                f"already ({target.tolist()}): re-export the model with a dynamic batch axis "
                "(Ultralytics: dynamic=True)"
            )
        target = target.copy()
        target[0] = -1
        tensor.CopyFrom(numpy_helper.from_array(target, tensor.name))
        rewritten += 1
    for value in [*inputs, *graph.output]:
        _set_batch_dim(value)
    del graph.value_info[:]  # intermediate shapes recorded with batch 1
    return model, rewritten


def check_batch_parity(path: Path, batch: int = 2) -> float:
    """Largest difference between a frame's outputs in a batch of ``batch`` different frames
    and the same frame run alone (ONNX Runtime, default options)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    node = session.get_inputs()[0]
    channels, height, width = node.shape[1:]
    frames = np.random.default_rng(0).random((batch, channels, height, width), np.float32)
    try:
        together = session.run(None, {node.name: frames})
    except Exception as exc:  # ORT's own error types: the graph keeps the batch size somewhere
        raise ToolError(f"{path.name}: a batch of {batch} does not run: "
                        f"{str(exc).strip().splitlines()[0]}") from None  # fmt: skip
    worst = 0.0
    for i in range(batch):
        alone = session.run(None, {node.name: frames[i : i + 1]})
        for a, b in zip(alone, together, strict=True):
            if b.shape[0] != batch:
                raise ToolError(f"{path.name}: an output has {b.shape[0]} rows for {batch} frames")
            worst = max(worst, float(np.abs(a[0] - b[i]).max()))
    return worst


def write_symbolic_batch(source: Path, target: Path) -> tuple[int, float]:
    """Rewrite ``source`` into ``target`` and check it: (Reshapes rewritten, parity diff)."""
    model, rewritten = symbolic_batch(onnx.load(str(source)))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    onnx.save(model, str(partial))
    try:
        worst = check_batch_parity(partial)
        if worst > PARITY_TOLERANCE:
            raise ToolError(
                f"{source.name}: frames in a batch differ from the same frames alone by {worst:g} "
                "(the graph mixes frames or keeps the batch size elsewhere): re-export the "
                "model with a dynamic batch axis (Ultralytics: dynamic=True)"
            )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return rewritten, worst


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m edged.tools.batch_axis MODEL.onnx OUT.onnx", file=sys.stderr)
        return 2
    try:
        rewritten, worst = write_symbolic_batch(Path(args[0]), Path(args[1]))
    except (ToolError, OSError, onnx.checker.ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DecodeError:
        print(f"error: {args[0]} is not an ONNX model (it does not parse as one)", file=sys.stderr)
        return 1
    print(f"{args[1]}: batch axis '{BATCH_DIM}', {rewritten} Reshape(s) rewritten, "
          f"a frame in a batch of 2 vs alone: max |diff| {worst:.2e}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
