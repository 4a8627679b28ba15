"""NCNN on the CPU: ``.param`` + ``.bin`` (as written by pnnx, see ``edged convert ncnn``)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edged.backends.base import BackendError, TensorSpec
from edged.backends.ncnn_plugin import NcnnOptions
from edged.backends.onnxruntime import allowed_cpus, spins

log = logging.getLogger(__name__)

# ``model.ncnn.param.json``: written by ``edged convert ncnn``; NCNN's files carry no metadata,
# so the ONNX model's (class names, stride, precision) travel beside them.
SIDECAR_SUFFIX = ".json"


def blob_names(param_text: str) -> tuple[list[str], list[str]]:
    """Input blobs (of ``Input`` layers) and output blobs (produced, never consumed)."""
    lines = [line.split() for line in param_text.splitlines()]
    if not lines or lines[0] != ["7767517"]:
        raise ValueError("not an NCNN .param file (no 7767517 magic)")
    inputs: list[str] = []
    produced: list[str] = []
    consumed: set[str] = set()
    for fields in lines[2:]:
        if len(fields) < 4:
            continue
        kind, n_in, n_out = fields[0], int(fields[2]), int(fields[3])
        bottoms = fields[4 : 4 + n_in]
        tops = fields[4 + n_in : 4 + n_in + n_out]
        consumed.update(bottoms)
        produced.extend(tops)
        if kind == "Input":
            inputs.extend(tops)
    outputs = [blob for blob in produced if blob not in consumed]
    return inputs, outputs


def read_sidecar_metadata(path: Path) -> dict[str, Any]:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.is_file():
        return {}
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f"{sidecar.name}: unreadable sidecar ({exc})") from None


def _options(net: Any, options: NcnnOptions) -> None:
    net.opt.num_threads = options.threads or allowed_cpus()
    net.opt.use_packing_layout = options.packing
    net.opt.use_fp16_packed = options.fp16_storage
    net.opt.use_fp16_storage = options.fp16_storage
    net.opt.use_fp16_arithmetic = options.fp16_arithmetic
    net.opt.use_bf16_storage = False
    net.opt.use_vulkan_compute = False


def set_wait_policy(options: NcnnOptions) -> None:
    """NCNN's wheel brings its own libgomp, whose idle threads spin-wait by default: with the
    other stages (or any other load) on the same cores a spinning team waits for descheduled
    partners in every layer. Measured on the 2-core VM at load ≈ 8: yolov5n 2081 ms per frame
    spinning, 149 ms with passive waiting. libgomp reads the policy once, when it is loaded, so
    it is set before the first ``import ncnn`` (an explicit OMP_WAIT_POLICY is left alone)."""
    threads = options.threads or allowed_cpus()
    policy = "ACTIVE" if spins(options.spin_wait, threads) else "PASSIVE"
    os.environ.setdefault("OMP_WAIT_POLICY", policy)


class NcnnBackend:
    """One ``ncnn.Net``; uint8 NHWC RGB in (NCNN scales it to 0–1 itself)."""

    def __init__(self, path: Path, options: NcnnOptions) -> None:
        set_wait_policy(options)
        import ncnn

        self._ncnn = ncnn
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise BackendError(f"{path.name}: its weights file {weights.name} is missing")
        try:
            inputs, self._outputs = blob_names(path.read_text(errors="replace"))
        except (OSError, ValueError, IndexError) as exc:
            raise BackendError(f"{path.name}: cannot read the NCNN graph: {exc}") from None
        if len(inputs) != 1 or not self._outputs:
            raise BackendError(
                f"{path.name}: expected one image input and an output, found inputs {inputs}"
            )
        self._input_name = inputs[0]
        sidecar = read_sidecar_metadata(path)
        self.metadata = {str(k): str(v) for k, v in sidecar.get("metadata", {}).items()}
        width, height = sidecar.get("input_width", 640), sidecar.get("input_height", 640)
        self.input = TensorSpec(self._input_name, width, height, layout="NHWC", dtype="uint8")
        self._net = ncnn.Net()
        _options(self._net, options)
        # NCNN reports load failures as a non-zero return code (and a line on stderr).
        if self._net.load_param(str(path)) != 0 or self._net.load_model(str(weights)) != 0:
            raise BackendError(f"{path.name}: NCNN cannot load {path.name} / {weights.name}")
        fp16 = options.fp16_storage or options.fp16_arithmetic
        self.precision = self.metadata.get("edged_precision") or ("fp16" if fp16 else "fp32")
        self.executed_precision = self.precision
        try:
            probe = self.infer(np.zeros(self.input.shape, np.uint8))
        except Exception as exc:
            raise BackendError(f"{path.name}: NCNN cannot run it: {exc}") from None
        self.output_shapes = [out.shape for out in probe]

    def _extract(self, tensor: np.ndarray) -> list[np.ndarray]:
        ncnn = self._ncnn
        image = np.ascontiguousarray(tensor[0])
        mat = ncnn.Mat.from_pixels(image, ncnn.Mat.PixelType.PIXEL_RGB, image.shape[1],
                                   image.shape[0])  # fmt: skip
        mat.substract_mean_normalize([], [1 / 255.0] * 3)
        with self._net.create_extractor() as ex:
            if ex.input(self._input_name, mat) != 0:
                raise BackendError(f"NCNN refused input {self._input_name!r}")
            results = []
            for name in self._outputs:
                code, out = ex.extract(name)
                if code != 0:
                    raise BackendError(f"NCNN could not compute output {name!r} ({code})")
                results.append(np.array(out)[None])  # NCNN drops the batch axis
        return results

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self._extract(tensor)

    def close(self) -> None:
        if self._net is not None:
            self._net.clear()
        self._net = None


def load_ncnn(path: Path, options: NcnnOptions) -> NcnnBackend:
    return NcnnBackend(path, options)
