"""Locate the read-only test data in ../shared/data; skip cleanly when it is absent."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
YOLOV5N = SHARED_DATA / "models" / "yolov5n.onnx"
COCO128_IMAGES = SHARED_DATA / "coco128" / "images"
COCO_VAL = SHARED_DATA / "coco-val2017-100"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared test data lives in ../shared/data)")
    return path


@functools.cache
def yolov8n_onnx() -> Path:
    """An untrained YOLOv8n exported offline by Ultralytics (once per test process)."""
    pytest.importorskip("ultralytics", reason="Ultralytics not installed (the [export] extra)")
    from edged.tools.export import export_ultralytics

    folder = Path(tempfile.mkdtemp(prefix="edged-yolov8n-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return export_ultralytics("yolov8n.yaml", folder / "yolov8n.onnx", imgsz=640).output_path
