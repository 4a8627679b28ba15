"""``edged export``: Ultralytics weights → ONNX with a fixed input size and the class names kept.

Ultralytics (and torch) are an optional extra: imported only here, when an export is asked for.
Weights named like ``yolov8n.pt`` that are not on disk are downloaded by Ultralytics itself; a
model YAML (``yolov8n.yaml``) builds an untrained network offline.
"""

from __future__ import annotations

import shutil
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


def _ensure_names(path: Path, names: dict[int, str]) -> tuple[str, ...]:
    """Ultralytics writes ``names``; older exporters did not, so add them if absent."""
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    if "names" not in meta:
        model.metadata_props.add(key="names", value=str(dict(names)))
        onnx.save(model, str(path))
    return tuple(names[i] for i in sorted(names))


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
        output_path: where the ONNX goes; default: Ultralytics' choice (beside the weights).
        imgsz: square input size, fixed in the graph (the daemon needs a static input).
        opset: ONNX opset; default: Ultralytics' choice for the installed torch.
        simplify: run Ultralytics' graph simplifier (onnxslim).
    """
    yolo = _yolo_class()
    start = time.perf_counter()
    try:
        model = yolo(str(weights))
        exported = Path(
            model.export(format="onnx", imgsz=imgsz, opset=opset, simplify=simplify, dynamic=False)
        )
    except (FileNotFoundError, ConnectionError) as exc:
        raise ToolError(f"cannot load {weights}: {exc}") from None
    if model.task != "detect":
        raise ToolError(f"{weights}: a {model.task} model; edged serves detection models")
    destination = Path(output_path) if output_path else exported
    if destination.resolve() != exported.resolve():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(exported), destination)
    names = _ensure_names(destination, dict(model.names))
    duration = round(time.perf_counter() - start, 2)
    weights_path = Path(str(weights))
    record: dict[str, Any] = {
        "kind": "edged.export",
        "version": 1,
        "output": destination.name,
        "output_sha256": sha256_file(destination),
        "precision": "fp32",
        "source": {
            "weights": str(weights),
            "sha256": sha256_file(weights_path) if weights_path.is_file() else None,
        },
        "settings": {"imgsz": imgsz, "opset": opset, "simplify": simplify},
        "classes": len(names),
        "duration_s": duration,
        "environment": {**environment(), "ultralytics": _ultralytics_version()},
    }
    sidecar = write_sidecar(destination, record)
    return ExportResult(destination, sidecar, names, duration)


def _ultralytics_version() -> str:
    import ultralytics

    return str(ultralytics.__version__)
