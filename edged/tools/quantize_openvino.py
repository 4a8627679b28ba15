"""``edged quantize openvino``: NNCF post-training INT8 for OpenVINO, from an FP32 ONNX model.

Calibration images go through the daemon's own letterbox, as for ``quantize static``. The
detection head stays float: edged's head finder names its ONNX nodes, and NNCF's
``IgnoredScope`` keeps the OpenVINO ops of those names out of quantization (OpenVINO splits a
Conv with bias into ``<name>/WithoutBiases`` + ``<name>``: both are listed). The IR keeps the
ONNX metadata (class names, stride) in its rt_info, plus ``edged_precision``; a sidecar JSON
like ``quantize static``'s is written beside it. With an :class:`AccuracyControl`, NNCF's
accuracy-control mode bounds the mAP50-95 drop (see :mod:`edged.tools.quantize_accuracy`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edged.backends.openvino import METADATA_SECTION
from edged.preprocess import letterbox, to_nchw_float
from edged.tools.dataset import list_images, read_image, sample_images
from edged.tools.errors import ToolError
from edged.tools.memory import PeakMemory
from edged.tools.quantize import (
    QuantizeResult,
    check_paths,
    float_nodes,
    our_metadata,
    source_info,
    write_quantize_sidecar,
)
from edged.tools.quantize_accuracy import AccuracyControl, quantize_with_accuracy_control

log = logging.getLogger(__name__)

OPENVINO_INT8 = "int8-openvino"


def ignored_names(
    onnx_names: Sequence[str], outputs: dict[str, Sequence[str]], ov_names: set[str]
) -> list[str]:
    """The OpenVINO ops that stand for the given ONNX nodes: OpenVINO names an op after its
    ONNX node, or after the node's output tensor, and splits a biased Conv in two
    (``<name>/WithoutBiases`` + ``<name>``)."""
    wanted = [
        candidate
        for name in onnx_names
        for candidate in (name, f"{name}/WithoutBiases", *outputs.get(name, ()))
    ]
    return [n for n in dict.fromkeys(wanted) if n in ov_names]


class LetterboxedImages:
    """Calibration tensors, read one at a time (never the whole set in memory)."""

    def __init__(self, images: Sequence[Path], input_size: tuple[int, int]) -> None:
        self.images = list(images)
        self.input_size = input_size

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.images:
            canvas, _ = letterbox(read_image(path), *self.input_size)
            yield to_nchw_float(canvas)


def _input_size(model: Any) -> tuple[int, int]:
    shape = model.inputs[0].get_partial_shape()
    if not shape.is_static or len(shape) != 4:
        raise ToolError(f"input shape {shape} is not a static 1×3×H×W image")
    return shape[3].get_length(), shape[2].get_length()


def quantize_openvino(
    model_path: str | Path,
    output_path: str | Path,
    calib_dir: str | Path,
    *,
    num_images: int | None = 128,
    keep_head_float: bool = True,
    head_levels: int = 0,
    float_stem: bool = False,
    preset: str = "mixed",
    seed: int = 0,
    progress: bool = True,
    accuracy: AccuracyControl | None = None,
) -> QuantizeResult:
    """NNCF post-training INT8 quantization of an FP32 ONNX model into OpenVINO IR.

    Args:
        model_path: FP32 ONNX model with a static 1×3×H×W input.
        output_path: the ``.xml`` to write (its ``.bin`` and a sidecar ``.json`` go beside it).
        calib_dir: folder of calibration images (searched recursively).
        num_images: how many images to calibrate on (a seeded sample; None: all).
        keep_head_float: keep the detection head (found by edged's head finder) in float.
        head_levels: also keep K rings of Conv layers before the head in float.
        float_stem: keep the image-reading Conv in float.
        preset: NNCF preset: ``mixed`` (asymmetric activations) or ``performance``.
        seed: seed of the image sample.
        progress: show NNCF's progress bars.
        accuracy: NNCF's accuracy-control mode: revert quantized operations to float until
            edged's mAP50-95 on a labelled set is within ``max_drop_points`` of FP32's.
    """
    import nncf
    import openvino as ov

    source, output = Path(model_path), Path(output_path)
    check_paths(source, output)
    if output.suffix.lower() != ".xml":
        raise ToolError(f"{output}: the output is OpenVINO IR, name it .xml")
    source_sha, source_meta = source_info(source)
    images = sample_images(list_images(Path(calib_dir)), num_images, seed)
    if not images:
        raise ToolError(f"{calib_dir}: no calibration images found")
    onnx_model = onnx.load(str(source), load_external_data=False)
    keep_float, info = float_nodes(onnx_model, keep_head_float, head_levels, float_stem)
    outputs = {node.name: tuple(node.output) for node in onnx_model.graph.node}
    del onnx_model
    # convert_model, not Core.read_model: it runs OpenVINO's offline fusions first (Sigmoid·x
    # → Swish, Conv + bias, no shape sub-graphs), so NNCF places its FakeQuantize ops where
    # the CPU plugin can fuse them. From read_model the quantized YOLOv8n compiled to 275
    # layout Reorders and 64 unfused sub-graphs instead of 9 and 4.
    model = ov.convert_model(str(source))
    ov_names = {op.get_friendly_name() for op in model.get_ops()}
    ignored = ignored_names(keep_float, outputs, ov_names)
    dataset = nncf.Dataset(LetterboxedImages(images, _input_size(model)))
    presets = {"mixed": nncf.QuantizationPreset.MIXED,
               "performance": nncf.QuantizationPreset.PERFORMANCE}  # fmt: skip
    started = time.perf_counter()
    options: dict[str, Any] = {
        "preset": presets[preset],
        "target_device": nncf.TargetDevice.CPU,
        "subset_size": len(images),
        "ignored_scope": nncf.IgnoredScope(names=ignored, validate=False),
        "model_type": None,
    }
    record: dict[str, Any] = {}
    warnings: list[str] = []
    with PeakMemory() as peak:
        if accuracy is None:
            quantized = nncf.quantize(model, dataset, **options)
        else:
            quantized, record, warnings = quantize_with_accuracy_control(
                model, source, dataset, accuracy, progress, **options
            )
    for key, value in {**source_meta, **our_metadata(OPENVINO_INT8, source_sha)}.items():
        quantized.set_rt_info(value, [METADATA_SECTION, key])
    output.parent.mkdir(parents=True, exist_ok=True)
    # Weights stay f32 in the file: the float head must not round through fp16.
    ov.save_model(quantized, str(output), compress_to_fp16=False)
    duration = time.perf_counter() - started
    settings = {
        "tool": "nncf",
        "mode": "default" if accuracy is None else "accuracy_control",
        "nncf": nncf.__version__,
        "openvino": ov.get_version(),
        "preset": preset,
        "num_images": len(images),
        "seed": seed,
        "keep_head_float": keep_head_float,
        "head_levels": head_levels,
        "float_stem": float_stem,
    }
    if accuracy is not None:
        settings["max_drop_points"] = accuracy.max_drop_points
        record = {"accuracy_control": record}
    sidecar = write_quantize_sidecar(
        output, OPENVINO_INT8, source, source_sha, settings, ignored,
        {"calibration": {"dir": str(calib_dir), "images": len(images)}, **info, **record,
         "warnings": warnings},
    )  # fmt: skip
    return QuantizeResult(
        output_path=output,
        sidecar_path=sidecar,
        precision=OPENVINO_INT8,
        excluded_nodes=tuple(ignored),
        duration_s=round(duration, 1),
        peak_rss_bytes=peak.peak_rss_bytes,
        calibration_images=len(images),
        settings=settings,
        warnings=tuple(warnings),
    )
