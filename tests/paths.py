"""Where the shared, offline test data lives (beside the project, never copied into it)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
YOLOV5N = SHARED_DATA / "models" / "yolov5n.onnx"
VAL_IMAGES = SHARED_DATA / "coco-val2017-100" / "images" / "val2017"
COCO128 = SHARED_DATA / "coco128"
VIDEO = SHARED_DATA / "videos" / "person-bicycle-car-detection.mp4"
VIDEO_FRAMES = 459  # frames that actually decode (the container claims 467)


def require(path: Path) -> Path:
    """Skip the calling test with a clear reason when shared data is absent."""
    if not path.exists():
        pytest.skip(f"shared test data missing: {path} (expected ../shared/data beside the repo)")
    return path
