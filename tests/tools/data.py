"""Locate the read-only test data in ../shared/data; skip cleanly when it is absent."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.paths import SHARED_DATA, YOLOV5N, require

COCO128_IMAGES = SHARED_DATA / "coco128" / "images"
COCO_VAL = SHARED_DATA / "coco-val2017-100"
__all__ = ["COCO128_IMAGES", "COCO_VAL", "SHARED_DATA", "YOLOV5N", "require", "yolov8n_onnx"]


@functools.cache
def yolov8n_onnx() -> Path:
    """An untrained YOLOv8n exported offline by Ultralytics (once per test process)."""
    pytest.importorskip("ultralytics", reason="Ultralytics not installed (the [export] extra)")
    from edged.tools.export import export_ultralytics

    folder = Path(tempfile.mkdtemp(prefix="edged-yolov8n-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return export_ultralytics("yolov8n.yaml", folder / "yolov8n.onnx", imgsz=640).output_path
