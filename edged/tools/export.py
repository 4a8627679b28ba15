"""``edged export``: Ultralytics weights → ONNX with a fixed input size and the class names kept.

Ultralytics (and torch) are an optional extra: imported only here, when an export is asked for.
Weights named like ``yolov8n.pt`` that are not on disk are downloaded by Ultralytics itself; a
model YAML (``yolov8n.yaml``) builds an untrained network offline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from edged.tools.errors import ToolError
from edged.tools.provenance import environment, sha256_file, write_sidecar

INSTALL_HINT = "pip install 'edged[export]'  (Ultralytics + torch; see models/README.md)"


@dataclass(frozen=True)
class ExportResult:
    output_path: Path
    sidecar_path: Path
    names: tuple[str, ...]
    duration_s: float


def _yolo_class():
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        missing = exc.name or "ultralytics"
        raise ToolError(
            f"edged export needs Ultralytics ({missing} missing): {INSTALL_HINT}"
        ) from None
    return YOLO


def _ensure_names(path: Path, names: dict[int, str]) -> tuple[tuple[str, ...], list[int]]:
    """Ultralytics writes ``names``; older exporters did not, so add them if absent. Returns
    the class names and the exported input shape (read from the same load)."""
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    if "names" not in meta:
        model.metadata_props.add(key="names", value=str(dict(names)))
        onnx.save(model, str(path))
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return tuple(names[i] for i in sorted(names)), shape


WEIGHT_SUFFIXES = (".pt", ".yaml", ".yml")
MAX_STRIDE = 32  # YOLO's coarsest feature map: the input size must be a multiple of it


def check_imgsz(imgsz: int) -> int:
    """Refuse a size Ultralytics would silently change (it rounds up to the stride)."""
    if imgsz < MAX_STRIDE or imgsz % MAX_STRIDE:
        raise ToolError(f"--imgsz {imgsz}: must be a multiple of {MAX_STRIDE} (e.g. 320, 640)")
    return imgsz


def _load_and_export(
    yolo: Any, name: str, shown: str, imgsz: int, opset: int | None, simplify: bool
) -> tuple[Any, Path]:
    """Load ``name`` (a staged copy when local; ``shown`` is what the user typed) and export."""
    try:
        model = yolo(name)
    except (FileNotFoundError, ConnectionError) as exc:
        raise ToolError(f"cannot load {shown}: {exc}") from None
    except Exception as exc:  # a junk or foreign checkpoint: Ultralytics raises many kinds
        reason = str(exc).replace(name, shown).splitlines()[0].removeprefix("ERROR ❌️ ")
        raise ToolError(f"cannot load {shown}: {reason}") from None
    if model.task != "detect":
        raise ToolError(f"{shown}: a {model.task} model; edged serves detection models")
    exported = model.export(format="onnx", imgsz=imgsz, opset=opset, simplify=simplify,
                            dynamic=False)  # fmt: skip
    return model, Path(exported).resolve()


def export_ultralytics(
    weights: str | Path,
    output_path: str | Path | None = None,
    *,
    imgsz: int = 640,
    opset: int | None = None,
    simplify: bool = True,
) -> ExportResult:
    """Export an Ultralytics detector (``.pt`` weights or a model ``.yaml``) to ONNX.

    Args:
        weights: a ``.pt`` file, an Ultralytics model name it can download (``yolov8n.pt``),
            or a model YAML (``yolov8n.yaml``, untrained, offline).
        output_path: where the ONNX goes; default: beside local weights, else the working
            directory (where Ultralytics itself would put it).
        imgsz: square input size, fixed in the graph (the daemon needs a static input).
        opset: ONNX opset; default: Ultralytics' choice for the installed torch.
        simplify: run Ultralytics' graph simplifier (onnxslim).
    """
    check_imgsz(imgsz)
    source = Path(str(weights))
    local = source.is_file()
    if local and source.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ToolError(f"{source}: not Ultralytics weights (expected a .pt file or a model "
                        ".yaml; an ONNX model needs no export)")  # fmt: skip
    yolo = _yolo_class()
    start = time.perf_counter()
    caller_dir = Path.cwd()
    # Ultralytics writes <stem>.onnx beside the weights or into the working directory,
    # over whatever file has that name. Export in a private directory; only the output
    # path the user chose is ever written.
    with tempfile.TemporaryDirectory(prefix="edged-export-") as tmp:
        work = Path(tmp)
        name = str(weights)
        if local:
            name = str(work / source.name)
            shutil.copy2(source, name)
        os.chdir(work)  # contextlib.chdir is Python 3.11+; edged supports 3.10
        try:
            model, exported = _load_and_export(yolo, name, str(weights), imgsz, opset, simplify)
        finally:
            os.chdir(caller_dir)
        if not local:  # keep a checkpoint Ultralytics downloaded where it would have left it
            for checkpoint in work.glob("*.pt"):
                if not (caller_dir / checkpoint.name).exists():
                    shutil.move(checkpoint, caller_dir / checkpoint.name)
                    source = caller_dir / checkpoint.name
        default = source.with_suffix(".onnx") if local else caller_dir / exported.name
        destination = Path(output_path) if output_path else default
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, destination)
    names, input_shape = _ensure_names(destination, dict(model.names))
    duration = round(time.perf_counter() - start, 2)
    record: dict[str, Any] = {
        "kind": "edged.export",
        "version": 1,
        "output": destination.name,
        "output_sha256": sha256_file(destination),
        "precision": "fp32",
        "source": {
            "weights": str(weights),
            "sha256": sha256_file(source) if source.is_file() else None,
        },
        "settings": {"imgsz": imgsz, "opset": opset, "simplify": simplify},
        "input_shape": input_shape,
        "classes": len(names),
        "duration_s": duration,
        "environment": {**environment(), "ultralytics": _ultralytics_version()},
    }
    sidecar = write_sidecar(destination, record)
    return ExportResult(destination, sidecar, names, duration)


def _ultralytics_version() -> str:
    import ultralytics

    return str(ultralytics.__version__)
