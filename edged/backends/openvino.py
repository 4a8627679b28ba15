"""OpenVINO on the CPU: ONNX or IR models, FP32 or NNCF INT8 (see ``edged quantize openvino``)."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable
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


def threads_of(options: OpenVinoOptions) -> int:
    return options.threads or allowed_cpus()


def requests_of(options: OpenVinoOptions) -> int:
    """Frames in flight. ``auto`` (left so only for the daemon's inference stage, see
    ``load_backend``): 2 once there are 2 threads to split into 2 streams (measured on a 2-core
    x86 VM: see the README's "Measured"), else 1."""
    if options.requests != "auto":
        return options.requests
    return 2 if threads_of(options) >= 2 else 1


def compile_config(options: OpenVinoOptions) -> dict[str, Any]:
    """The locked execution policy, as OpenVINO properties (same thread budget as ORT). With
    several requests in flight, the throughput hint with one CPU stream per request: each stream
    runs its frame on its share of the threads, so two frames run side by side."""
    requests = requests_of(options)
    hint = options.performance_hint
    if hint == "auto":
        hint = "latency" if requests == 1 else "throughput"
    config: dict[str, Any] = {
        "INFERENCE_NUM_THREADS": threads_of(options),
        "PERFORMANCE_HINT": hint.upper(),
        "EXECUTION_MODE_HINT": options.execution_mode.upper(),
        "ENABLE_CPU_PINNING": options.cpu_pinning,
    }
    if hint == "throughput":
        config["NUM_STREAMS"] = requests
    return config


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
    """One compiled model with a fixed-size image input, and ``requests_in_flight`` infer
    requests: ``infer``/``infer_into`` run one frame on the first; ``submit``/``wait`` keep up
    to all of them busy (the inference stage does, see :class:`~edged.backends.InFlightBackend`).

    Not OpenVINO's ``AsyncInferQueue``: it picks the idle request itself, and each frame's
    outputs must be bound (in shared memory) to the request that runs it, so the pool is here.
    """

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
        self.requests_in_flight = requests_of(options)
        self._requests = [self._compiled.create_infer_request()
                          for _ in range(self.requests_in_flight)]  # fmt: skip
        self._request = self._requests[0]
        self._idle: deque[Any] = deque(self._requests)
        self.output_shapes = [
            tuple(d.get_length() if d.is_static else -1 for d in o.get_partial_shape())
            for o in self._compiled.outputs
        ]
        self.executed_precision = executed_precision(self._compiled)
        self.precision = self.metadata.get("edged_precision") or (
            "int8" if self.executed_precision.startswith("int8") else "fp32"
        )
        config = compile_config(options)
        log.info(
            "%s: OpenVINO %s on %s, %s threads, %d request(s) in flight (%s hint), runs %s "
            "(execution_mode %s)", path.name, ov.get_version().split("-")[0], options.device,
            config["INFERENCE_NUM_THREADS"], self.requests_in_flight,
            config["PERFORMANCE_HINT"].lower(), self.executed_precision, options.execution_mode,
        )  # fmt: skip

    @property
    def static_outputs(self) -> bool:
        return all(d > 0 for shape in self.output_shapes for d in shape)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        results = self._request.infer({0: tensor})
        return [np.array(results[o]) for o in self._compiled.outputs]

    def infer_into(self, tensor: np.ndarray, outputs: list[np.ndarray]) -> None:
        """Read the input and write the outputs in place (shared memory): no copies."""
        _bind(self._request, tensor, outputs)
        self._request.infer()

    def submit(
        self, tensor: np.ndarray, outputs: list[np.ndarray], on_done: Callable[[], None]
    ) -> Any:
        """Start one frame on an idle request (``infer_into``'s binding) and return at once;
        ``on_done`` runs on OpenVINO's thread when it has finished or failed."""
        if not self._idle:
            raise BackendError(f"more than {self.requests_in_flight} frames submitted at once")
        request = self._idle.popleft()
        try:
            _bind(request, tensor, outputs)
            request.set_callback(lambda _userdata: on_done(), None)
            request.start_async()
        except Exception:
            self._idle.append(request)
            raise
        return request

    def wait(self, handle: Any) -> None:
        """Until the submitted frame is done; raises what its inference raised."""
        try:
            handle.wait()
        finally:
            self._idle.append(handle)

    def close(self) -> None:
        for request in self._requests:
            if request not in self._idle:  # never free memory a running request writes into
                with contextlib.suppress(Exception):  # its failure is nobody's news now
                    request.wait()
        self._requests, self._request, self._idle = [], None, deque()
        self._compiled = None


def _bind(request: Any, tensor: np.ndarray, outputs: list[np.ndarray]) -> None:
    import openvino as ov

    request.set_input_tensor(ov.Tensor(tensor, shared_memory=True))
    for i, out in enumerate(outputs):
        request.set_output_tensor(i, ov.Tensor(out, shared_memory=True))


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_openvino(path: Path, options: OpenVinoOptions) -> OpenVinoBackend:
    return OpenVinoBackend(path, options)
