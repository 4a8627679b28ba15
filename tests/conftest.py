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


@pytest.fixture(scope="session")
def runtime_variant_dir(tmp_path_factory: pytest.TempPathFactory, variant_dir: Path) -> Path:
    """models/ with yolov5n on every CPU runtime: ORT FP32 + static, OpenVINO FP32 (the ONNX)
    + INT8 IR (NNCF, 8 calibration images), NCNN (pnnx; absent when pnnx is not installed),
    and broken IRs."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from edged.tools.quantize_openvino import quantize_openvino

    root = tmp_path_factory.mktemp("runtime-models")
    for name in ("yolov5n.onnx", "yolov5n-static.onnx"):
        shutil.copyfile(variant_dir / name, root / name)
    quantize_openvino(root / "yolov5n.onnx", root / "yolov5n-ov-int8.xml",
                      require(COCO128) / "images", num_images=8, progress=False)  # fmt: skip
    xml = (root / "yolov5n-ov-int8.xml").read_text()
    (root / "corrupt.xml").write_text(xml[: len(xml) // 2])
    shutil.copyfile(root / "yolov5n-ov-int8.bin", root / "corrupt.bin")
    (root / "no-weights.xml").write_text(xml)
    variants = {
        "fp32": {"backend": "onnxruntime", "path": "yolov5n.onnx", "precision": "fp32"},
        "static": {"backend": "onnxruntime", "path": "yolov5n-static.onnx",
                   "precision": "int8-static"},
        "openvino-fp32": {"backend": "openvino", "path": "yolov5n.onnx", "precision": "fp32",
                          "options": {"execution_mode": "accuracy"}},
        "openvino-int8": {"backend": "openvino", "path": "yolov5n-ov-int8.xml",
                          "precision": "int8-openvino"},
        "openvino-corrupt": {"backend": "openvino", "path": "corrupt.xml"},
        "openvino-no-weights": {"backend": "openvino", "path": "no-weights.xml"},
    }  # fmt: skip
    try:
        from edged.tools.convert_ncnn import convert_ncnn, pnnx_command

        pnnx_command()
    except Exception:  # pnnx (needs torch) is an extra: the NCNN variant is left out
        pass
    else:
        convert_ncnn(root / "yolov5n.onnx", root / "yolov5n-ncnn.param")
        variants["ncnn"] = {"backend": "ncnn", "path": "yolov5n-ncnn.param", "precision": "fp32"}
    manifest = {**MANIFEST, "variants": variants}
    (root / "yolov5n.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return root
