"""Shared fixtures: a model directory with real FP32 / static / dynamic variants of YOLOv5n."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.paths import COCO128, YOLOV5N, require

MANIFEST = {
    "name": "yolov5n",
    "labels": "auto",
    "input": {"width": 640, "height": 640},
    "output_format": "auto",
    "variants": {
        "fp32": {"backend": "onnxruntime", "path": "yolov5n.onnx", "precision": "fp32"},
        "static": {"backend": "onnxruntime", "path": "yolov5n-static.onnx",
                   "precision": "int8-static"},
        "dynamic": {"backend": "onnxruntime", "path": "yolov5n-dynamic.onnx",
                    "precision": "int8-dynamic"},
        # Broken on purpose: the daemon must refuse each and keep serving.
        "truncated": {"backend": "onnxruntime", "path": "yolov5n-truncated.onnx"},
        "missing": {"backend": "onnxruntime", "path": "not-there.onnx"},
        "escape": {"backend": "onnxruntime", "path": "../../../../../../etc/passwd"},
        "symlink": {"backend": "onnxruntime", "path": "outside-link.onnx"},
    },
}  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def private_rewrite_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Rewritten models go to a cache of this test session (daemons started by tests inherit
    it), not to the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CACHE_DIRECTORY", raising=False)
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture(scope="session")
def variant_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ with yolov5n FP32, static INT8 (8 calibration images), dynamic INT8 + broken ones."""
    from edged.tools.quantize import quantize_dynamic, quantize_static

    root = tmp_path_factory.mktemp("models")
    fp32 = root / "yolov5n.onnx"
    shutil.copyfile(require(YOLOV5N), fp32)
    quantize_static(fp32, root / "yolov5n-static.onnx", require(COCO128) / "images",
                    num_images=8, progress=False)  # fmt: skip
    quantize_dynamic(fp32, root / "yolov5n-dynamic.onnx")
    data = fp32.read_bytes()
    (root / "yolov5n-truncated.onnx").write_bytes(data[: len(data) // 3])
    outside = tmp_path_factory.mktemp("outside") / "model.onnx"
    shutil.copyfile(fp32, outside)
    (root / "outside-link.onnx").symlink_to(outside)
    (root / "yolov5n.yaml").write_text(yaml.safe_dump(MANIFEST, sort_keys=False))
    return root
