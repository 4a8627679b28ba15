"""Bad model files through the real loader: odd ``names`` metadata and external data outside
the model's directory are refused as :class:`BadModelFile` with a reason, never a crash.

The models are real ONNX files: the tiny detector of tests.tools.models (and the real YOLOv5n
for the huge ``names``), rewritten with ``onnx``.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort
import pytest

from edged.config import InferenceConfig
from edged.labels import MAX_NAMES_CHARS, BadNames, labels_from_metadata, parse_names
from edged.model_files import BadModelFile, check_external_data, external_data_locations
from edged.models import resolve_single_file
from edged.pipeline.model_loader import load_model
from tests.model_files import HUGE, external_model, with_names
from tests.paths import YOLOV5N, require
from tests.tools.models import tiny_yolov8

ODD_NAMES = {
    "huge": HUGE,
    "deep-under-the-cap": "-" * 60_000 + "1",
    "tuple-key": "{(1,): 2}",  # TypeError in sorted(key=int)
    "not-a-literal": "person, car",
    "gappy": "{0: 'a', 5: 'b'}",
    "nested-name": "{0: ['a']}",
    "a-number": "42",
}


def load(path: Path):
    return load_model(resolve_single_file(path, None), InferenceConfig(), 1, 0)


@pytest.mark.parametrize("name", list(ODD_NAMES))
def test_odd_names_are_a_bad_model_with_a_reason(tmp_path: Path, name: str) -> None:
    path = with_names(tiny_yolov8(tmp_path / "tiny.onnx"), tmp_path / f"{name}.onnx",
                      ODD_NAMES[name])  # fmt: skip
    with pytest.raises(BadModelFile) as info:
        load(path)
    message = str(info.value)
    assert path.name in message and "metadata 'names'" in message and "\n" not in message


def test_huge_names_in_the_real_yolov5n_are_refused_quickly(tmp_path: Path) -> None:
    """Before: MemoryError out of the loader, the inference stage crashed, systemd restarted."""
    path = with_names(require(YOLOV5N), tmp_path / "yolov5n-huge-names.onnx", HUGE)
    with pytest.raises(BadModelFile, match=f"more than {MAX_NAMES_CHARS}"):
        load(path)


def test_ordinary_names_still_load(tmp_path: Path) -> None:
    backend, model = load(tiny_yolov8(tmp_path / "tiny.onnx"))
    assert model.labels == ("cat", "dog")
    backend.close()
    assert parse_names("['a', 'b']") == ("a", "b")
    assert parse_names("{'1': 'b', '0': 'a'}") == ("a", "b")
    assert labels_from_metadata({}) is None
    with pytest.raises(BadNames):
        parse_names("{True: 'a'}")


# -- external data ------------------------------------------------------------------------------


def test_external_data_inside_the_directory_loads(tmp_path: Path) -> None:
    path = external_model(tmp_path / "models", "weights/w.bin")
    assert external_data_locations(path) == ["weights/w.bin"]
    backend, model = load(path)
    assert model.labels == ("cat", "dog")
    backend.close()


def test_a_self_contained_model_is_not_parsed(tmp_path: Path) -> None:
    """No 'location' bytes, no onnx parse (the inference process stays 18 MB smaller)."""
    assert b"location" not in require(YOLOV5N).read_bytes()
    assert external_data_locations(YOLOV5N) == []


@pytest.mark.parametrize("how", ["parent", "absolute", "symlink-out", "symlinked-dir-out"])
def test_external_data_outside_the_directory_is_refused(tmp_path: Path, how: str) -> None:
    """Before: only ONNX Runtime's own check stood between a model and /etc/shadow."""
    models, outside = tmp_path / "models", tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.bin"
    if how == "parent":
        path = external_model(models, "../outside/secret.bin")
    elif how == "absolute":
        path = external_model(models, str(secret))
    elif how == "symlink-out":  # a name inside, a file outside
        path = external_model(models, "w.bin", data_at=secret)
        os.symlink(secret, models / "w.bin")
    else:
        path = external_model(models, "sub/w.bin", data_at=outside / "w.bin")
        os.symlink(outside, models / "sub")
    with pytest.raises(BadModelFile) as info:
        check_external_data(path)
    assert "external data location" in str(info.value) and path.name in str(info.value)
    with pytest.raises(BadModelFile):
        load(path)


def test_the_installed_onnxruntime_confines_external_data_itself(tmp_path: Path) -> None:
    """pyproject's floor (onnxruntime>=1.24.1) brings ORT's own check: without ours, a
    location escaping the model's directory must still fail to load."""
    path = external_model(tmp_path / "models", "../outside/secret.bin")
    with pytest.raises(Exception, match="escapes"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
