"""OpenVINO on the CPU: ONNX or IR models, FP32 or NNCF INT8 (see ``edged quantize openvino``)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edged.backends.base import BackendError, TensorSpec
from edged.backends.onnxruntime import allowed_cpus
from edged.backends.openvino_plugin import OpenVinoOptions
from edged.backends.rewrite_cache import cache_root

log = logging.getLogger(__name__)

# Where ONNX metadata (names, stride, edged_precision, ...) lands in an OpenVINO model's rt_info:
# the ONNX frontend puts metadata_props there, and `ov.save_model` keeps it in the IR.
METADATA_SECTION = "framework"
# OpenVINO's type names → edged's precision words.
_PRECISION_WORDS = {"i8": "int8", "u8": "int8", "bf16": "bf16", "f16": "fp16", "f32": "fp32"}


def compile_config(options: OpenVinoOptions) -> dict[str, Any]:
    """The locked execution policy, as OpenVINO properties (same thread budget as ORT)."""
    return {
        "INFERENCE_NUM_THREADS": options.threads or allowed_cpus(),
        "PERFORMANCE_HINT": options.performance_hint.upper(),
        "EXECUTION_MODE_HINT": options.execution_mode.upper(),
        "ENABLE_CPU_PINNING": options.cpu_pinning,
    }


def model_metadata(model: Any) -> dict[str, str]:
    info = model.get_rt_info()
    if METADATA_SECTION not in info:
        return {}
    section = model.get_rt_info([METADATA_SECTION])
    keys = section.astype(dict).keys() if hasattr(section, "astype") else ()
    return {k: model.get_rt_info([METADATA_SECTION, k]).astype(str) for k in keys}


def executed_precision(compiled: Any) -> str:
    """What the convolutions actually run in, read from the compiled graph: ``int8``,
    ``bf16``, ``fp16`` or ``fp32``; mixed graphs name the majority and the rest."""
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "layerType" not in info or info["layerType"].astype(str) != "Convolution":
            continue
        word = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "f32"
        counts[_PRECISION_WORDS.get(word.lower(), word.lower())] += 1
    if not counts:
        return "unknown"
    ranked = [word for word, _ in counts.most_common()]
    return ranked[0] if len(ranked) == 1 else f"{ranked[0]} (+{'/'.join(ranked[1:])})"


def _image_input(path: Path, model: Any) -> TensorSpec:
    """Float 0–1 RGB 1×3×H×W, or uint8 RGB 1×H×W×3 (as after edged's ORT rewrites)."""
    if len(model.inputs) != 1:
        raise BackendError(f"{path.name}: expected one image input, found {len(model.inputs)}")
    node = model.inputs[0]
    shape = node.get_partial_shape()
    static = shape.is_static and len(shape) == 4
    dims = [d.get_length() for d in shape] if static else []
    kind = node.get_element_type().get_type_name()
    if static and dims[:2] == [1, 3] and kind == "f32":
        return TensorSpec(node.get_any_name(), width=dims[3], height=dims[2])
    if static and dims[0] == 1 and dims[3] == 3 and kind == "u8":
        return TensorSpec(node.get_any_name(), dims[2], dims[1], layout="NHWC", dtype="uint8")
    raise BackendError(
        f"{path.name}: unsupported input {kind} {shape}; expected a static 1×3×H×W float or "
        "1×H×W×3 uint8 image input (export with a fixed imgsz)"
    )


def _read_model(core: Any, path: Path) -> Any:
    if path.suffix.lower() == ".xml":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise BackendError(f"{path.name}: its weights file {weights.name} is missing")
        return core.read_model(str(path), str(weights))
    return core.read_model(str(path))


def _uint8_nhwc(model: Any) -> Any:
    """uint8 NHWC RGB in, converted and scaled to float 0–1 NCHW inside the compiled graph."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0)
    return ppp.build()


class OpenVinoBackend:
    """One compiled model and one infer request, with a fixed-size image input."""

    def __init__(self, path: Path, options: OpenVinoOptions) -> None:
        import openvino as ov

        core = ov.Core()
        if options.model_cache:
            cache = cache_root() / "openvino"
            try:
                cache.mkdir(parents=True, exist_ok=True)
                core.set_property({"CACHE_DIR": str(cache)})
            except OSError as exc:  # a read-only home: load without the cache
                log.warning("OpenVINO model cache off: %s", exc)
        try:
            model = _read_model(core, path)
        except BackendError:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError with multi-line messages
            raise BackendError(
                f"{path.name}: OpenVINO cannot read the model: {_first(exc)}"
            ) from None
        self.input = _image_input(path, model)
        self.metadata = model_metadata(model)
        if options.uint8_input and self.input.layout == "NCHW":
            model = _uint8_nhwc(model)
            self.input = TensorSpec(self.input.name, self.input.width, self.input.height,
                                    layout="NHWC", dtype="uint8")  # fmt: skip
        try:
            self._compiled = core.compile_model(model, options.device, compile_config(options))
        except Exception as exc:
            raise BackendError(f"{path.name}: OpenVINO cannot compile it: {_first(exc)}") from None
        self._request = self._compiled.create_infer_request()
        self.output_shapes = [
            tuple(d.get_length() if d.is_static else -1 for d in o.get_partial_shape())
            for o in self._compiled.outputs
        ]
        self.executed_precision = executed_precision(self._compiled)
        self.precision = self.metadata.get("edged_precision") or (
            "int8" if self.executed_precision.startswith("int8") else "fp32"
        )
        log.info(
            "%s: OpenVINO %s on %s, %s threads, runs %s (execution_mode %s)", path.name,
            ov.get_version().split("-")[0], options.device,
            compile_config(options)["INFERENCE_NUM_THREADS"], self.executed_precision,
            options.execution_mode,
        )  # fmt: skip

    @property
    def static_outputs(self) -> bool:
        return all(d > 0 for shape in self.output_shapes for d in shape)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        results = self._request.infer({0: tensor})
        return [np.array(results[o]) for o in self._compiled.outputs]

    def infer_into(self, tensor: np.ndarray, outputs: list[np.ndarray]) -> None:
        """Read the input and write the outputs in place (shared memory): no copies."""
        import openvino as ov

        self._request.set_input_tensor(ov.Tensor(tensor, shared_memory=True))
        for i, out in enumerate(outputs):
            self._request.set_output_tensor(i, ov.Tensor(out, shared_memory=True))
        self._request.infer()

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_openvino(path: Path, options: OpenVinoOptions) -> OpenVinoBackend:
    return OpenVinoBackend(path, options)
