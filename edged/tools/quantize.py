"""``edged quantize static|dynamic``: INT8 variants of an FP32 ONNX detector.

Static (QDQ, per-channel weights) needs calibration images, preprocessed with the daemon's own
letterbox. The detection head stays in float (see :mod:`edged.backends.head_find`), the calibration
statistics are gathered in chunks so memory stays bounded, and the peak memory of the run is
measured. Dynamic quantizes weights only and computes activation ranges at run time.

Every output keeps the source model's metadata (``names``, ``stride``, ...), gains
``edged_precision`` (read by the daemon's backend), and gets a sidecar JSON beside it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx

from edged.backends.graph_edit import data_inputs
from edged.backends.head_find import find_head, find_stem
from edged.backends.onnxruntime import PRECISION_METADATA_KEY
from edged.tools.calibration import LetterboxCalibrationReader, chunk_size
from edged.tools.dataset import list_images, sample_images
from edged.tools.errors import ToolError
from edged.tools.memory import PeakMemory
from edged.tools.presets import RECOMMENDED_STATIC
from edged.tools.provenance import (
    SOURCE_SHA_METADATA_KEY,
    environment,
    sha256_file,
    write_sidecar,
)
from edged.tools.qdq_concat import share_concat_quantization

log = logging.getLogger(__name__)

CalibrationMethodName = Literal["minmax", "entropy", "percentile"]
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
STATIC, DYNAMIC = "int8-static", "int8-dynamic"


@dataclass(frozen=True)
class QuantizeResult:
    output_path: Path
    sidecar_path: Path
    precision: str
    excluded_nodes: tuple[str, ...]
    duration_s: float
    peak_rss_bytes: int | None = None
    calibration_images: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _ort_quantization():
    # Imported lazily: onnxruntime.quantization pulls in sympy & co, only needed here.
    from onnxruntime import quantization

    return quantization


def _quant_type(name: str):
    q = _ort_quantization()
    try:
        return {"uint8": q.QuantType.QUInt8, "int8": q.QuantType.QInt8}[name]
    except KeyError:
        raise ToolError(f"unknown quantization type {name!r} (use uint8 or int8)") from None


def _has_sympy() -> bool:
    try:
        import sympy  # noqa: F401
    except ImportError:
        return False
    return True


def _preprocess(source: Path, destination: Path, enabled: bool) -> Path:
    """ORT's quantization pre-processing: shape inference + graph optimisation.

    Its symbolic shape inference needs sympy, which onnxruntime no longer depends on; edged's
    models have static shapes, so ONNX's own shape inference is enough without it.
    """
    if not enabled:
        return source
    q = _ort_quantization()
    skip_symbolic = not _has_sympy()
    try:
        q.quant_pre_process(str(source), str(destination), skip_symbolic_shape=skip_symbolic)
    except Exception as exc:  # symbolic shape inference fails on some exotic graphs
        if skip_symbolic:
            raise
        log.warning("pre-processing failed (%s); retrying without symbolic shape inference", exc)
        q.quant_pre_process(str(source), str(destination), skip_symbolic_shape=True)
    return destination


def float_nodes(
    model: onnx.ModelProto, keep_head_float: bool, head_levels: int, float_stem: bool
) -> tuple[list[str], dict[str, Any]]:
    """The nodes a quantizer keeps float: the detection head (and ``head_levels`` Conv rings
    before it), the image-reading stem; plus what was found, for the sidecar."""
    names: list[str] = []
    info: dict[str, Any] = {}
    if keep_head_float:
        try:
            head = find_head(model, head_levels)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        names += head.nodes
        info = {"head_boundary": list(head.boundary), "head_op_types": head.op_types}
    if float_stem:
        stem = find_stem(model)
        names += stem
        info["stem"] = list(stem)
    return names, info


def _exclusions(
    model: onnx.ModelProto,
    keep_head_float: bool,
    head_levels: int,
    exclude_nodes: Sequence[str],
    exclude_op_types: Sequence[str],
    float_stem: bool = False,
) -> tuple[list[str], dict[str, Any]]:
    names = {n.name for n in model.graph.node}
    missing = [n for n in exclude_nodes if n not in names]
    if missing:
        raise ToolError(
            f"nodes not found in the (pre-processed) graph: {', '.join(missing)} "
            "(ORT's pre-processing folds constants and fuses some nodes; --no-preprocess keeps "
            "the original names, which Netron shows)"
        )
    names, info = float_nodes(model, keep_head_float, head_levels, float_stem)
    excluded: dict[str, None] = dict.fromkeys(names)
    excluded.update(dict.fromkeys(exclude_nodes))
    types = set(exclude_op_types)
    unknown = sorted(types - {n.op_type for n in model.graph.node})
    if unknown:
        raise ToolError(f"no node of op type {', '.join(unknown)} in the graph (op types are "
                        "case-sensitive, e.g. Concat, Sigmoid)")  # fmt: skip
    excluded.update(dict.fromkeys(n.name for n in model.graph.node if n.op_type in types))
    return list(excluded), info


def _input_spec(model: onnx.ModelProto) -> tuple[str, tuple[int, int]]:
    inputs = data_inputs(model.graph)
    if len(inputs) != 1:
        raise ToolError(f"expected one image input, found {len(inputs)}")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ToolError("the image input is not float32: quantize the FP32 export")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or dims[2] <= 0 or dims[3] <= 0:
        raise ToolError(f"input shape {dims} is not a static 1×3×H×W image (export a fixed imgsz)")
    return inputs[0].name, (dims[3], dims[2])


def _write_output(
    quantized: Path,
    output_path: Path,
    source_metadata: dict[str, str],
    extra: dict[str, str],
    transform: Callable[[onnx.ModelProto], int] | None = None,
) -> int | None:
    """Save with the source's metadata (ORT's passes drop or keep it by version) + ours,
    after ``transform`` (a pass over the quantized graph) when given; returns its result."""
    model = onnx.load(str(quantized))
    outcome = transform(model) if transform is not None else None
    meta = {p.key: p.value for p in model.metadata_props}
    meta.update(source_metadata)
    meta.update(extra)
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(output_path))
    return outcome


def our_metadata(precision: str, source_sha: str) -> dict[str, str]:
    return {PRECISION_METADATA_KEY: precision, SOURCE_SHA_METADATA_KEY: source_sha}


def source_info(source: Path) -> tuple[str, dict[str, str]]:
    """Hash and metadata of the FP32 source; refuses a model that is already quantized."""
    try:
        model = onnx.load(str(source), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: one line, not a traceback
        raise ToolError(f"{source}: not a readable ONNX model ({type(exc).__name__})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if PRECISION_METADATA_KEY in meta:
        precision = meta[PRECISION_METADATA_KEY]
        raise ToolError(f"{source}: already quantized ({precision}); start from the FP32 model")
    return sha256_file(source), meta


def check_paths(model_path: Path, output_path: Path) -> None:
    if not model_path.is_file():
        raise ToolError(f"{model_path}: no such model file")
    if output_path.resolve() == model_path.resolve():
        raise ToolError("the output must not overwrite the source model")


def write_quantize_sidecar(
    output_path: Path,
    precision: str,
    source: Path,
    source_sha: str,
    settings: dict[str, Any],
    excluded: list[str],
    extra: dict[str, Any],
) -> Path:
    record = {
        "kind": "edged.quantize",
        "version": 1,
        "output": output_path.name,
        "output_sha256": sha256_file(output_path),
        "precision": precision,
        "source": {"path": str(source), "sha256": source_sha},
        "settings": settings,
        "excluded_nodes": excluded,
        **extra,
        "environment": environment(),
    }
    return write_sidecar(output_path, record)


def _ort_static(
    prepared: Path,
    quantized: Path,
    images: Sequence[Path],
    input_name: str,
    input_size: tuple[int, int],
    settings: dict[str, Any],
    excluded: list[str],
    progress: bool,
    method: str,
) -> PeakMemory:
    """One ``quantize_static`` run (calibration included) under a peak-memory probe."""
    q = _ort_quantization()
    reader = LetterboxCalibrationReader(images, input_name, input_size, progress)
    # ORT's strided loop calls collect_data per chunk: histograms absorb and drop each chunk.
    extra_options: dict[str, Any] = {"CalibStridedMinMax": settings["chunk"]}
    if method == "percentile":
        extra_options["CalibPercentile"] = settings["percentile"]
    try:
        # ORT prints calibration chatter on stdout; keep stdout for results.
        with PeakMemory() as memory, contextlib.redirect_stdout(io.StringIO()):
            q.quantize_static(
                str(prepared),
                str(quantized),
                reader,
                quant_format=q.QuantFormat.QDQ,
                per_channel=settings["per_channel"],
                activation_type=_quant_type(settings["activation_type"]),
                weight_type=_quant_type(settings["weight_type"]),
                nodes_to_exclude=excluded,
                calibrate_method={
                    "minmax": q.CalibrationMethod.MinMax,
                    "entropy": q.CalibrationMethod.Entropy,
                    "percentile": q.CalibrationMethod.Percentile,
                }[method],
                extra_options=extra_options,
            )
    finally:
        reader.close()
    return memory


def _calibration_images(calib_dir: str | Path, num_images: int | None, seed: int) -> list[Path]:
    """The seeded sample of calibration images (all of them when the folder holds fewer)."""
    images = sample_images(list_images(calib_dir), num_images, seed)
    if num_images is not None and len(images) < num_images:
        log.warning("%s holds %d images; calibrating on all of them, not %d",
                    calib_dir, len(images), num_images)  # fmt: skip
    return images


def _calibrate_with_fallback(
    run: Callable[[str], PeakMemory], settings: dict[str, Any], warnings: list[str]
) -> PeakMemory:
    """Calibrate with ``settings["method"]``, falling back to minmax where histograms fail."""
    method = settings["method"]
    try:
        return run(method)
    except ValueError as exc:
        # Histogram methods fail on near-constant tensors (numpy cannot make 2048 float32
        # bins inside their range), e.g. the score branch of an untrained model.
        if method == "minmax" or "bins" not in str(exc):
            raise
        warnings.append(f"{method} calibration failed ({exc}); fell back to minmax")
        settings.update(requested_method=method, method="minmax")
        return run("minmax")


def _calibration_record(calib_dir: str | Path, images: list[Path]) -> dict[str, Any]:
    """What the sidecar says about the calibration set: enough to rebuild it exactly."""
    file_list = [str(p.relative_to(Path(calib_dir))) for p in images]
    return {
        "dir": str(calib_dir),
        "images": len(images),
        "files_sha256": hashlib.sha256("\n".join(file_list).encode()).hexdigest(),
        "files": file_list,
    }


def quantize_static(
    model_path: str | Path,
    output_path: str | Path,
    calib_dir: str | Path,
    *,
    method: CalibrationMethodName = RECOMMENDED_STATIC.method,  # type: ignore[assignment]
    num_images: int | None = RECOMMENDED_STATIC.num_images,
    per_channel: bool = True,
    activation_type: str = RECOMMENDED_STATIC.activation_type,
    weight_type: str = "int8",
    keep_head_float: bool = True,
    head_levels: int = RECOMMENDED_STATIC.head_levels,
    float_stem: bool = RECOMMENDED_STATIC.float_stem,
    share_concat_scales: bool = RECOMMENDED_STATIC.share_concat_scales,
    exclude_nodes: Sequence[str] = (),
    exclude_op_types: Sequence[str] = (),
    percentile: float = RECOMMENDED_STATIC.percentile,
    chunk: int = RECOMMENDED_STATIC.chunk,
    preprocess: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> QuantizeResult:
    """Static INT8 (QDQ) quantization calibrated on images from ``calib_dir``.

    Args:
        model_path: FP32 ONNX model with a static 1×3×H×W input.
        output_path: where the INT8 model goes (a sidecar ``.json`` is written beside it).
        calib_dir: folder of calibration images (searched recursively).
        method: calibration method: ``minmax``, ``entropy`` or ``percentile``.
        num_images: how many images to calibrate on (a seeded sample; None: all).
        per_channel: per-output-channel weight scales.
        activation_type / weight_type: ``uint8`` or ``int8``.
        keep_head_float: leave the detection head (found automatically) in float.
        head_levels: also keep this many rings of Conv layers before the head in float.
        float_stem: keep the Convs reading the image (≤ 4 channels) in float: faster on x86
            and no less accurate (see :func:`edged.backends.head_find.find_stem`).
        share_concat_scales: one scale for all tensors a Concat joins, so ORT copies instead
            of re-quantizing them (see :mod:`edged.tools.qdq_concat`).
        exclude_nodes: further node names to keep in float.
        exclude_op_types: op types to keep in float everywhere.
        percentile: the percentile for ``method="percentile"``.
        chunk: images per calibration chunk: bounds memory for histogram methods (each chunk's
            activations are binned, then dropped).
        preprocess: run ORT's ``quant_pre_process`` (shape inference + optimisation) first.
        seed: seed of the calibration image sample.
        progress: show a progress bar on stderr.
    """
    source, output = Path(model_path), Path(output_path)
    check_paths(source, output)
    if method not in CALIBRATION_METHODS:
        raise ToolError(f"unknown calibration method {method!r} ({', '.join(CALIBRATION_METHODS)})")
    images = _calibration_images(calib_dir, num_images, seed)
    settings: dict[str, Any] = {
        "format": "QDQ",
        "method": method,
        "num_images": len(images),
        "per_channel": per_channel,
        "activation_type": activation_type,
        "weight_type": weight_type,
        "keep_head_float": keep_head_float,
        "head_levels": head_levels,
        "float_stem": float_stem,
        "share_concat_scales": share_concat_scales,
        "exclude_nodes": list(exclude_nodes),
        "exclude_op_types": list(exclude_op_types),
        "chunk": chunk_size(len(images), chunk),
        "preprocess": preprocess,
        "seed": seed,
    }
    if method == "percentile":
        settings["percentile"] = percentile
    warnings: list[str] = []
    source_sha, source_meta = source_info(source)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edged-quant-") as tmp:
        prepared = _preprocess(source, Path(tmp) / "prepared.onnx", preprocess)
        model = onnx.load(str(prepared))
        input_name, input_size = _input_spec(model)
        excluded, head_info = _exclusions(
            model, keep_head_float, head_levels, exclude_nodes, exclude_op_types, float_stem
        )
        del model
        quantized = Path(tmp) / "quantized.onnx"
        run = functools.partial(
            _ort_static, prepared, quantized, images, input_name, input_size, settings, excluded,
            progress,
        )  # fmt: skip
        memory = _calibrate_with_fallback(run, settings, warnings)
        shared_groups = _write_output(
            quantized,
            output,
            source_meta,
            our_metadata(STATIC, source_sha),
            share_concat_quantization if share_concat_scales else None,
        )
    duration = round(time.perf_counter() - start, 2)
    sidecar = write_quantize_sidecar(
        output,
        STATIC,
        source,
        source_sha,
        settings,
        excluded,
        {
            **head_info,
            "calibration": _calibration_record(calib_dir, images),
            "concat_groups_shared": shared_groups or 0,
            "peak_rss_bytes": memory.peak_rss_bytes,
            "baseline_rss_bytes": memory.baseline_rss_bytes,
            "peak_rss_exact": memory.exact,
            "duration_s": duration,
            "warnings": warnings,
        },
    )
    return QuantizeResult(
        output,
        sidecar,
        STATIC,
        tuple(excluded),
        duration,
        memory.peak_rss_bytes,
        len(images),
        settings,
        tuple(warnings),
    )


def quantize_dynamic(
    model_path: str | Path,
    output_path: str | Path,
    *,
    per_channel: bool = False,
    weight_type: str = "int8",
    keep_head_float: bool = True,
    head_levels: int = 0,
    float_stem: bool = True,
    exclude_nodes: Sequence[str] = (),
    exclude_op_types: Sequence[str] = (),
    preprocess: bool = True,
) -> QuantizeResult:
    """Dynamic INT8: weights quantized offline, activation ranges computed per run.

    No calibration data. On CPUs without fast integer convolution kernels the result can be
    slower than FP32 (Conv becomes ``ConvInteger``); measure it with ``edged bench``.
    """
    q = _ort_quantization()
    source, output = Path(model_path), Path(output_path)
    check_paths(source, output)
    settings: dict[str, Any] = {
        "per_channel": per_channel,
        "weight_type": weight_type,
        "keep_head_float": keep_head_float,
        "head_levels": head_levels,
        "float_stem": float_stem,
        "exclude_nodes": list(exclude_nodes),
        "exclude_op_types": list(exclude_op_types),
        "preprocess": preprocess,
    }
    source_sha, source_meta = source_info(source)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edged-quant-") as tmp:
        prepared = _preprocess(source, Path(tmp) / "prepared.onnx", preprocess)
        model = onnx.load(str(prepared))
        _input_spec(model)
        excluded, head_info = _exclusions(
            model, keep_head_float, head_levels, exclude_nodes, exclude_op_types, float_stem
        )
        del model
        quantized = Path(tmp) / "quantized.onnx"
        with PeakMemory() as memory:
            q.quantize_dynamic(
                str(prepared),
                str(quantized),
                per_channel=per_channel,
                weight_type=_quant_type(weight_type),
                nodes_to_exclude=excluded,
            )
        _write_output(quantized, output, source_meta, our_metadata(DYNAMIC, source_sha))
    duration = round(time.perf_counter() - start, 2)
    sidecar = write_quantize_sidecar(
        output,
        DYNAMIC,
        source,
        source_sha,
        settings,
        excluded,
        {**head_info, "peak_rss_bytes": memory.peak_rss_bytes, "duration_s": duration},
    )
    return QuantizeResult(
        output, sidecar, DYNAMIC, tuple(excluded), duration, memory.peak_rss_bytes, 0, settings
    )
