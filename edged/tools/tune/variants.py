"""Which variants of a manifest this device can run, and making the missing standard ones.

A variant is skipped, with the reason, when its runtime is not installed or its file is absent
and cannot be made. "Standard" variants are the ones models/README.md documents how to make from
the FP32 ONNX: ORT static and dynamic INT8, OpenVINO INT8 (NNCF), NCNN (pnnx); each is made with
the tool's documented defaults into the path the manifest names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edged.backends.registry import backend_spec
from edged.models import (
    ModelError,
    ModelManifest,
    ResolvedVariant,
    VariantManifest,
    resolve_variant,
)
from edged.tools.errors import ToolError


@dataclass(frozen=True)
class Planned:
    """One variant of the manifest: ready (``resolved``), or skipped with ``reason``."""

    name: str
    backend: str
    precision: str | None
    resolved: ResolvedVariant | None = None
    reason: str | None = None
    made: bool = False  # made by this run


# (backend, precision) → how to make its file from the FP32 ONNX: (fp32, output, calib) → None.
Maker = Callable[[Path, Path, Path], None]


def _static(fp32: Path, out: Path, calib: Path) -> None:
    from edged.tools.quantize import quantize_static

    quantize_static(fp32, out, calib, progress=False)


def _dynamic(fp32: Path, out: Path, calib: Path) -> None:
    from edged.tools.quantize import quantize_dynamic

    quantize_dynamic(fp32, out)


def _openvino(fp32: Path, out: Path, calib: Path) -> None:
    from edged.tools.quantize_openvino import quantize_openvino

    quantize_openvino(fp32, out, calib, progress=False)


def _ncnn(fp32: Path, out: Path, calib: Path) -> None:
    from edged.tools.convert_ncnn import convert_ncnn, pnnx_command

    pnnx_command()  # raises "pnnx is not installed ..." before any work
    convert_ncnn(fp32, out)


def maker_for(backend: str, precision: str | None, path: str) -> Maker | None:
    if backend == "onnxruntime" and precision == "int8-static":
        return _static
    if backend == "onnxruntime" and precision == "int8-dynamic":
        return _dynamic
    if backend == "openvino" and path.endswith(".xml") and (precision or "").startswith("int8"):
        return _openvino
    if backend == "ncnn" and path.endswith(".param"):
        return _ncnn
    return None


def plan_variants(
    manifest_path: Path,
    manifest: ModelManifest,
    models_dir: Path,
    reference: str,
    calib: Path | None,
    only: tuple[str, ...] = (),
    say: Callable[[str], None] = lambda _m: None,
) -> list[Planned]:
    """Every variant (or those in ``only``), resolved or skipped; missing standard ones made
    from the reference's ONNX when ``calib`` is given. The reference comes first."""
    names = [n for n in manifest.variants if not only or n in only]
    unknown = set(only) - set(manifest.variants)
    if unknown:
        raise ToolError(
            f"no variant {', '.join(sorted(unknown))} in {manifest_path} "
            f"(has: {', '.join(manifest.variants)})"
        )
    if reference not in manifest.variants:
        raise ToolError(f"{manifest_path}: no reference variant {reference!r} (--reference)")
    names = [reference, *(n for n in names if n != reference)]
    planned: list[Planned] = []
    made: set[Path] = set()
    for name in names:
        spec = manifest.variants[name]
        base = Planned(name, spec.backend, spec.precision)
        runtime = backend_spec(spec.backend)
        if not runtime.installed():
            reason = f"runtime {spec.backend} not installed (no {runtime.runtime_module} module)"
            planned.append(_skip(base, reason))
            continue
        try:
            planned.append(_ready(base, manifest_path, models_dir))
            continue
        except ModelError as exc:
            missing = str(exc)
        made_now = _make(manifest_path, models_dir, reference, name, spec, calib, made, say)
        if isinstance(made_now, str):
            planned.append(_skip(base, f"{missing}; {made_now}"))
            continue
        try:
            planned.append(
                Planned(**{**_ready(base, manifest_path, models_dir).__dict__, "made": True})
            )
        except ModelError as exc:
            planned.append(_skip(base, str(exc)))
    return planned


def _skip(base: Planned, reason: str) -> Planned:
    return Planned(base.name, base.backend, base.precision, reason=reason)


def _ready(base: Planned, manifest_path: Path, models_dir: Path) -> Planned:
    resolved = resolve_variant(manifest_path, base.name, models_dir)
    return Planned(base.name, base.backend, base.precision, resolved=resolved)


def _make(
    manifest_path: Path,
    models_dir: Path,
    reference: str,
    name: str,
    spec: VariantManifest,
    calib: Path | None,
    made: set[Path],
    say: Callable[[str], None],
) -> str | None:
    """Make the variant's file; None when made, else why not (a sentence)."""
    backend, precision, path = spec.backend, spec.precision, spec.path
    maker = maker_for(backend, precision, path)
    if maker is None:
        return "not a variant edged tune knows how to make"
    if calib is None:
        return "give --calib DIR to make it"
    try:
        fp32 = resolve_variant(manifest_path, reference, models_dir).path
    except ModelError as exc:
        return f"the reference is not usable ({exc})"
    if fp32.suffix.lower() != ".onnx":
        return f"the reference {fp32.name} is not an ONNX file to make it from"
    out = Path(path) if Path(path).is_absolute() else manifest_path.parent / path
    if out in made:  # two variants of one file (NCNN fp32 and fp16)
        return None
    say(f"making {name} ({out.name})")
    try:
        maker(fp32, out, calib)
    except (ToolError, RuntimeError, ValueError, OSError) as exc:  # NNCF/pnnx failures too
        return f"could not make it: {exc}"
    made.add(out)
    return None
