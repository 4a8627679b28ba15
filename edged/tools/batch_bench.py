"""``edged bench --batch N``: one inference call on N frames (say, N cameras' latest frames)
against one call per frame, in the same process, the batch sizes taking turns call by call.

Issue 18 asked to batch frames of different cameras where the backend gains from it, and to
measure before keeping; this is the measurement, as a tool a user can rerun on their machine.
Batch 1 is always measured as the reference. Each batch size gets its own session (ONNX
Runtime: the symbolic batch dimension fixed by a free-dimension override) or compiled model
(OpenVINO: reshaped), so each runs as a static graph, as the daemon's batch 1 does. Outputs are
written in place into preallocated arrays (as the daemon's inference stage does). Timed: the
inference call only; the frames are letterboxed once beforehand, each into its own slot.

ONNX Runtime runs the graph as it stands: edged's load-time rewrites (uint8 NHWC input, head
cut) are made for batch 1 and are left out at every batch size here, so batch 1 can be a little
slower than ``edged bench`` of the same model; the ratio between batch sizes is the result.
NCNN's extractor takes one image at a time (no batch axis) and a Hailo batch needs a HEF
compiled for that batch and the device: both are refused with the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from edged.preprocess import Letterbox, TensorWriter
from edged.tools.backend_choice import backend_name, options_for, split_backend
from edged.tools.bench import BenchSettings, _bench_image, run_isolated
from edged.tools.errors import ToolError
from edged.tools.provenance import environment, model_identity
from edged.tools.system import TimedWindow, machine_report, pinned, system_state

RESULT_KIND = "edged.bench-batch"
RESULT_VERSION = 1
MAX_BATCH = 16
FIX_HINT = (
    "--batch needs a model whose input has a dynamic batch axis: export it with one "
    "(Ultralytics: dynamic=True) or, for a fixed-batch ONNX, "
    "`python -m edged.tools.batch_axis MODEL.onnx OUT.onnx` (an OpenVINO IR: convert or "
    "quantize it again from such an ONNX)"
)
NO_BATCH_AXIS = {
    "ncnn": "NCNN's extractor runs one image per call (its tensors have no batch axis)",
    "hailo": "a Hailo batch needs a HEF compiled for that batch size and the device; "
    "measure it on the device (hailortcli run --batch-size N)",
}


class BatchSession(Protocol):
    """One model fixed to one batch size, float 0–1 RGB ``batch×3×H×W`` in."""

    batch: int
    height: int
    width: int

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Outputs written in place; valid until the next call."""
        ...

    def close(self) -> None: ...


def check_batch_axis(model: str, dims: Sequence[object], batch: int) -> tuple[int, int]:
    """(H, W) of a ``B×3×H×W`` input that can take ``batch`` frames; else a ToolError naming why.

    A dimension is an int (fixed), or a name/None/-1 (dynamic)."""
    fixed = [d if isinstance(d, int) and d > 0 else None for d in dims]
    if len(fixed) != 4 or fixed[1] != 3:
        raise ToolError(f"{model}: input shape {list(dims)} is not B×3×H×W (batch, 3 colour "
                        "channels, height, width): --batch feeds float RGB planes")  # fmt: skip
    if fixed[2] is None or fixed[3] is None:
        raise ToolError(
            f"{model}: input shape {list(dims)} has a named or dynamic height/width; fix it: "
            "python -m onnxruntime.tools.make_dynamic_shape_fixed --dim_param "
            "height --dim_value 640 IN.onnx OUT.onnx"
        )
    if fixed[0] is not None and fixed[0] != batch:
        raise ToolError(
            f"{model}: its input's batch axis is fixed at {fixed[0]}, so it cannot take "
            f"{batch} frame(s) in one call. {FIX_HINT}"
        )
    return fixed[2], fixed[3]


class _OrtBatch:
    def __init__(self, path: Path, options: BaseModel, batch: int) -> None:
        import onnx
        import onnxruntime as ort

        from edged.backends.graph_edit import data_inputs
        from edged.backends.onnxruntime import session_options

        graph = onnx.load(str(path), load_external_data=False).graph
        node = data_inputs(graph)[0]
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in node.type.tensor_type.shape.dim]  # fmt: skip
        self.batch = batch
        self.height, self.width = check_batch_axis(path.name, dims, batch)
        so = session_options(options)  # the daemon's execution policy (threads, spinning)
        if isinstance(dims[0], str):  # a static graph for this batch size
            so.add_free_dimension_override_by_name(dims[0], batch)
        self._session = ort.InferenceSession(str(path), so, providers=options.providers)
        self._input = node.name
        self._outputs: list[np.ndarray] = []

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        if not self._outputs:  # shapes known once it has run
            self._outputs = self._session.run(None, {self._input: tensor})
            return self._outputs
        binding = self._session.io_binding()
        binding.bind_cpu_input(self._input, tensor)
        for meta, out in zip(self._session.get_outputs(), self._outputs, strict=True):
            binding.bind_output(meta.name, "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)
        self._session.run_with_iobinding(binding)
        return self._outputs

    def close(self) -> None:
        self._session = None


class _OpenVinoBatch:
    def __init__(self, path: Path, options: BaseModel, batch: int) -> None:
        import openvino as ov

        from edged.backends.openvino import compile_config

        core = ov.Core()
        model = core.read_model(str(path))  # an .xml finds its .bin beside it
        node = model.inputs[0]
        shape = node.get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        self.batch = batch
        self.height, self.width = check_batch_axis(path.name, dims, batch)
        if dims[0] is None:
            try:
                model.reshape({node.get_any_name(): ov.PartialShape([batch, 3, *dims[2:]])})
            except Exception as exc:  # OpenVINO's multi-line RuntimeError
                raise ToolError(f"{path.name}: OpenVINO cannot reshape it to a batch of {batch}: "
                                f"{str(exc).strip().splitlines()[0]}") from None  # fmt: skip
        # One request with every thread, as the tools always run (the latency hint).
        config = compile_config(options.model_copy(update={"requests": 1}))
        self._compiled = core.compile_model(model, options.device, config)
        self._request = self._compiled.create_infer_request()
        self._outputs = [np.empty(tuple(o.get_shape()), np.float32) for o in self._compiled.outputs]
        for i, out in enumerate(self._outputs):
            self._request.set_output_tensor(i, ov.Tensor(out, shared_memory=True))

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        import openvino as ov

        self._request.set_input_tensor(ov.Tensor(tensor, shared_memory=True))
        self._request.infer()
        return self._outputs

    def close(self) -> None:
        self._request = self._compiled = None


_OPENERS = {"onnxruntime": _OrtBatch, "openvino": _OpenVinoBatch}


def open_batched(model: str | Path, options: BaseModel, batch: int,
                 backend: str | None = None) -> BatchSession:  # fmt: skip
    """``model`` on its backend, fixed to ``batch`` frames per call."""
    name = backend_name(model, backend)
    path = split_backend(model)[1]
    if name not in _OPENERS:
        reason = NO_BATCH_AXIS.get(name, "this backend has no batched path here")
        raise ToolError(f"{path.name}: --batch cannot run on {name}: {reason}")
    if not path.is_file():
        raise ToolError(f"{path}: no such model file")
    return _OPENERS[name](path, options, batch)


def camera_frames(image: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` different frames: ``image`` shifted sideways, as if from several cameras."""
    return [np.ascontiguousarray(np.roll(image, shift=37 * i, axis=1)) for i in range(count)]


def letterbox_batch(frames: Sequence[np.ndarray], height: int,
                    width: int) -> tuple[np.ndarray, list[Letterbox]]:  # fmt: skip
    """The frames letterboxed by the daemon's writer into one ``N×3×H×W`` tensor, a slot each."""
    tensor = np.empty((len(frames), 3, height, width), np.float32)
    writer = TensorWriter("NCHW")
    boxes = [writer.write(frame, tensor[i : i + 1], key=i) for i, frame in enumerate(frames)]
    return tensor, boxes


def frame_outputs(session: BatchSession, tensor: np.ndarray) -> list[list[np.ndarray]]:
    """Each frame's outputs (copies), frame by frame, from one call on the whole batch."""
    outputs = session.run(tensor)
    return [[o[i : i + 1].copy() for o in outputs] for i in range(tensor.shape[0])]


def largest_difference(reference: Sequence[list[np.ndarray]],
                       batched: Sequence[list[np.ndarray]]) -> float:  # fmt: skip
    """Largest |difference| between each frame's outputs alone and in the batch."""
    return max(float(np.abs(a - b).max())
               for alone, together in zip(reference, batched, strict=True)
               for a, b in zip(alone, together, strict=True))  # fmt: skip


@dataclass(frozen=True)
class BatchFigures:
    """One batch size; milliseconds over the timed calls only."""

    batch: int
    calls: int
    call_mean_ms: float
    call_p50_ms: float
    per_frame_ms: float  # mean call time ÷ batch
    fps: float  # frames per second: batch × calls per second
    vs_batch1: float  # fps ÷ batch 1's fps, same run
    max_abs_diff: float  # a frame's outputs in this batch vs the same frame alone


@dataclass(frozen=True)
class BatchBenchResult:
    identity: dict[str, str]
    settings: BenchSettings
    figures: list[BatchFigures]
    cpu_percent: float
    system_before: dict[str, Any]
    system_after: dict[str, Any]
    warnings: list[str]
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    environment: dict[str, str] = field(default_factory=environment)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": RESULT_KIND, "version": RESULT_VERSION, **asdict(self)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> BatchBenchResult:
        fields = {k: v for k, v in d.items() if k not in ("kind", "version")}
        fields.update(
            settings=BenchSettings.from_dict(d["settings"]),
            figures=[BatchFigures(**f) for f in d["figures"]],
            load_average=tuple(d["load_average"]),
        )
        return BatchBenchResult(**fields)

    def summary_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "model": self.identity["name"],
                "backend": self.identity.get("backend", ""),
                "precision_format": self.identity["precision"],
                "threads": self.settings.intra_op_threads,
                **asdict(f),
                "load_1m": self.load_average[0],
                "other_cpu_percent": self.system_after.get("other_cpu_percent"),
            }
            for f in self.figures
        ]


def _stats(batch: int, calls_ms: Sequence[float], reference_fps: float | None,
           diff: float) -> BatchFigures:  # fmt: skip
    a = np.asarray(calls_ms, dtype=np.float64)
    fps = 1000.0 * batch / float(a.mean())
    return BatchFigures(
        batch=batch,
        calls=len(a),
        call_mean_ms=round(float(a.mean()), 3),
        call_p50_ms=round(float(np.percentile(a, 50)), 3),
        per_frame_ms=round(float(a.mean()) / batch, 3),
        fps=round(fps, 2),
        vs_batch1=round(fps / (reference_fps or fps), 3),
        max_abs_diff=float(f"{diff:.3g}"),
    )


def benchmark_batches(model: str | Path, batches: Sequence[int],
                      settings: BenchSettings | None = None) -> BatchBenchResult:  # fmt: skip
    """Batch 1 and each of ``batches`` on ``model``, taking turns call by call: ``warmup``
    untimed then ``runs`` timed calls each, pinned to the settings' CPUs."""
    s = (settings or BenchSettings()).resolved()
    sizes = sorted({1, *batches})
    if sizes[-1] > MAX_BATCH or s.runs < 1:
        raise ToolError(f"need batch sizes 1..{MAX_BATCH} and runs ≥ 1")
    name = backend_name(model, s.backend)
    options = options_for(name, s.intra_op_threads, inter_op_threads=s.inter_op_threads,
                          graph_optimization=s.graph_optimization, spin_wait=s.spin_wait,
                          **dict(s.backend_options))  # fmt: skip
    before = system_state()
    sessions: list[BatchSession] = []
    # Pinned before the sessions exist: their thread pools inherit the mask.
    with pinned(s.cpus):
        try:
            for size in sizes:
                sessions.append(open_batched(model, options, size, backend=name))
            first = sessions[0]
            frames = camera_frames(_bench_image(s), sizes[-1])
            tensors = [letterbox_batch(frames[: b.batch], first.height, first.width)[0]
                       for b in sessions]  # fmt: skip
            # Frame i is the same in every batch: each alone (batch 1) is the reference.
            reference = [frame_outputs(first, tensors[-1][i : i + 1])[0]
                         for i in range(sizes[-1])]  # fmt: skip
            diffs = [largest_difference(reference[: b.batch], frame_outputs(b, t))
                     for b, t in zip(sessions, tensors, strict=True)]  # fmt: skip
            for _ in range(s.warmup):
                for session, tensor in zip(sessions, tensors, strict=True):
                    session.run(tensor)
            timed: list[list[float]] = [[] for _ in sessions]
            with TimedWindow(s.cpus) as window:
                for _ in range(s.runs):
                    for times, session, tensor in zip(timed, sessions, tensors, strict=True):
                        t0 = time.perf_counter()
                        session.run(tensor)
                        times.append(1000.0 * (time.perf_counter() - t0))
        finally:
            for session in sessions:
                session.close()
    reference_fps = 1000.0 / float(np.mean(timed[0]))
    figures = [_stats(b.batch, times, reference_fps, d)
               for b, times, d in zip(sessions, timed, diffs, strict=True)]  # fmt: skip
    # What else ran on the pinned CPUs meanwhile: the figures are only as clean as the machine.
    after, warnings = machine_report(before, window, "the pinned CPUs")
    return BatchBenchResult(
        identity=model_identity(split_backend(model)[1], backend=name),  # hashes the file once
        settings=s,
        figures=figures,
        cpu_percent=window.cpu_percent,
        system_before=before,
        system_after=after,
        warnings=warnings,
        load_average=tuple(round(x, 2) for x in os.getloadavg()),
    )


def benchmark_batches_isolated(
    model: str | Path, batches: Sequence[int], settings: BenchSettings | None = None
) -> BatchBenchResult:
    """:func:`benchmark_batches` in a fresh interpreter, as ``edged bench`` runs each model."""
    request = {"model": str(model), "batches": list(batches),
               "settings": asdict(settings or BenchSettings())}  # fmt: skip
    return BatchBenchResult.from_dict(run_isolated("edged.tools.batch_bench", request, model))


def _worker(request: dict[str, Any]) -> dict[str, Any]:
    settings = BenchSettings.from_dict(request["settings"])
    return benchmark_batches(request["model"], request["batches"], settings).to_dict()


if __name__ == "__main__":
    from edged.tools.bench import serve_isolated

    serve_isolated(_worker)
