"""configs/pi5-hailo.yaml and models/yolov8s-hailo.yaml: valid, and loadable end to end.

The end-to-end part runs the manifest's Hailo variant through edged's model resolution and model
loader with the ``hailo_platform`` double standing in for HailoRT (a dummy HEF file).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml

from edged.config import InferenceConfig, load_config
from edged.labels import COCO80
from edged.models import load_manifest, resolve_variant

try:
    from tests.fakes.fixtures import fake_hailo, write_hef
except ModuleNotFoundError:  # tests/unit is not a package and the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.fakes.fixtures import fake_hailo, write_hef

__all__ = ["fake_hailo"]  # the fixture, imported for pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/pi5-hailo.yaml"
MANIFEST = ROOT / "models/yolov8s-hailo.yaml"


def test_pi5_hailo_config_is_valid() -> None:
    config = load_config(CONFIG)
    assert config.source.uri == "picamera2:"
    assert config.model.manifest == "yolov8s-hailo" and config.model.variant == "hailo"
    assert "/usr/share/hailo-models" in config.model.allowed_dirs
    assert config.inference.hailo.timeout_ms == 1000


def test_manifest_lists_the_hefs_raspberry_pi_os_installs() -> None:
    manifest = load_manifest(MANIFEST)
    assert manifest.name == "yolov8s" and manifest.labels == "coco80"
    assert (manifest.input.width, manifest.input.height) == (640, 640)
    hailo, hailo8 = manifest.variants["hailo"], manifest.variants["hailo8"]
    assert (hailo.backend, hailo.path) == ("hailo", "/usr/share/hailo-models/yolov8s_h8l.hef")
    assert (hailo8.backend, hailo8.path) == ("hailo", "/usr/share/hailo-models/yolov8s_h8.hef")
    assert hailo.precision == hailo8.precision == "int8"
    assert manifest.variants["fp32"].backend == "onnxruntime"


@pytest.mark.parametrize("variant", ["hailo", "hailo8"])
def test_manifest_variant_loads_through_the_model_loader(
    fake_hailo: ModuleType, tmp_path: Path, variant: str
) -> None:
    from edged.pipeline.model_loader import load_model

    # the same manifest, with the HEF directory moved to a temporary "/usr/share/hailo-models"
    hef_dir = tmp_path / "hailo-models"
    hef_dir.mkdir()
    arch = "HAILO8L" if variant == "hailo" else "HAILO8"
    fake_hailo.FAKE.arch = arch
    data = yaml.safe_load(MANIFEST.read_text())
    for spec in data["variants"].values():
        spec["path"] = spec["path"].replace("/usr/share/hailo-models", str(hef_dir))
    write_hef(Path(data["variants"][variant]["path"]), arch=arch)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    manifest = models_dir / "yolov8s-hailo.yaml"
    manifest.write_text(yaml.safe_dump(data))

    resolved = resolve_variant(manifest, variant, models_dir, (hef_dir,))
    backend, descriptor = load_model(resolved, InferenceConfig(), warmup_runs=1, generation=0)
    try:
        assert descriptor.output_layout == "hailo_nms"
        assert descriptor.labels == COCO80
        assert (descriptor.input_width, descriptor.input_height) == (640, 640)
        assert (descriptor.input_layout, descriptor.input_dtype) == ("NHWC", "uint8")
        assert backend.infer(np.zeros((1, 640, 640, 3), np.uint8))[0].shape[1] == 6
    finally:
        backend.close()
