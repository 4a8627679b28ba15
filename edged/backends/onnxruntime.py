"""ONNX Runtime on the CPU (or any configured execution provider)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edged.backends.base import BackendError, TensorSpec
from edged.config import OnnxRuntimeOptions

_GRAPH_OPT = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(options: OnnxRuntimeOptions) -> ort.SessionOptions:
    """A locked execution policy: explicit thread counts, sequential mode, no spinning."""
    so = ort.SessionOptions()
    so.graph_optimization_level = _GRAPH_OPT[options.graph_optimization]
    so.intra_op_num_threads = options.intra_op_threads or len(os.sched_getaffinity(0))
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if not options.spin_wait:
        # Idle ORT worker threads otherwise spin for a while after each run and steal the
        # cores the other pipeline stages need.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


# `edged quantize` writes this metadata key into the models it produces.
PRECISION_METADATA_KEY = "edged_precision"


def precision_of(metadata: dict[str, str]) -> str:
    """``int8-static`` / ``int8-dynamic`` for models made by ``edged quantize``, else ``fp32``."""
    return metadata.get(PRECISION_METADATA_KEY, "fp32")


class OnnxRuntimeBackend:
    """One ``InferenceSession`` with a fixed-size image input."""

    def __init__(self, path: Path, options: OnnxRuntimeOptions) -> None:
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=session_options(options), providers=options.providers
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
            raise BackendError(
                f"{path.name}: ONNX Runtime cannot load the model: {first_line}"
            ) from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{path.name}: expected one image input, found {len(inputs)}")
        shape = inputs[0].shape
        if (
            len(shape) != 4
            or shape[1] != 3
            or not all(isinstance(d, int) and d > 0 for d in shape[2:])
        ):
            raise BackendError(
                f"{path.name}: unsupported input shape {shape}; "
                "expected a static 1×3×H×W image input (export with a fixed imgsz)"
            )
        if inputs[0].type != "tensor(float)":
            raise BackendError(f"{path.name}: input type {inputs[0].type} is not float32")
        self._input_name = inputs[0].name
        self.input = TensorSpec(inputs[0].name, width=shape[3], height=shape[2])
        self.output_shapes = [
            tuple(d if isinstance(d, int) else -1 for d in o.shape)
            for o in self._session.get_outputs()
        ]
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.precision = precision_of(self.metadata)
        self.providers = self._session.get_providers()

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {self._input_name: tensor})

    @property
    def static_outputs(self) -> bool:
        """True when every output shape is known, so results can be written in place."""
        return all(d > 0 for shape in self.output_shapes for d in shape)

    def infer_into(self, tensor: np.ndarray, outputs: list[np.ndarray]) -> None:
        """Run with the input read and the outputs written in place (e.g. in shared memory).

        Saves a copy of every output per frame (8.6 MB for YOLOv5's 1×25200×85).
        """
        binding = self._session.io_binding()
        binding.bind_cpu_input(self._input_name, tensor)
        for meta, out in zip(self._session.get_outputs(), outputs, strict=True):
            binding.bind_output(meta.name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self._session.run_with_iobinding(binding)

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]


def load_onnxruntime(path: Path, options: OnnxRuntimeOptions) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(path, options)
