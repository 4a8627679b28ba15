"""Where a model file came from: its hash, its metadata, and the sidecar JSON written beside it."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

import onnx

import edged
from edged.backends.onnxruntime import precision_of

SIDECAR_SUFFIX = ".json"
# Written by `edged quantize` into each variant: lets reports pair a variant with its FP32 source.
SOURCE_SHA_METADATA_KEY = "edged_source_sha256"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_metadata(path: str | Path) -> dict[str, str]:
    """A model's metadata (names, stride, edged_precision, ...): ONNX ``metadata_props``,
    OpenVINO IR's rt_info ``framework`` section, or an NCNN model's sidecar."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".xml":
        return _ir_metadata(p)
    if suffix == ".param":
        from edged.backends.ncnn import read_sidecar_metadata

        return {str(k): str(v) for k, v in read_sidecar_metadata(p).get("metadata", {}).items()}
    if suffix != ".onnx":
        return {}
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _ir_metadata(path: Path) -> dict[str, str]:
    """``<rt_info><framework><names value="..."/>...`` of an IR, read without OpenVINO."""
    import xml.etree.ElementTree as ElementTree

    from edged.backends.openvino import METADATA_SECTION

    section = ElementTree.parse(path).getroot().find(f"rt_info/{METADATA_SECTION}")
    if section is None:
        return {}
    return {item.tag: item.get("value", "") for item in section}


def model_identity(
    path: str | Path, backend: str | None = None, precision: str | None = None
) -> dict[str, str]:
    """What results are keyed by: file, content hash, precision, and the FP32 source's hash
    (plus the backend that ran it, and the precision it ran in when the caller knows it)."""
    p = Path(path)
    metadata = read_metadata(p)
    sha = sha256_file(p)
    identity = {
        "model": str(p),
        "name": p.stem,
        "sha256": sha,
        "precision": precision or precision_of(metadata),
        "source_sha256": metadata.get(SOURCE_SHA_METADATA_KEY, sha),
    }
    if backend is not None:
        identity["backend"] = backend
    return identity


def environment() -> dict[str, str]:
    """Versions that change results: recorded in every sidecar and result file."""
    import onnxruntime

    return {
        "edged": edged.__version__,
        "python": sys.version.split()[0],
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def sidecar_path(model_path: str | Path) -> Path:
    """``model.onnx`` → ``model.onnx.json``."""
    p = Path(model_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def write_sidecar(model_path: str | Path, record: dict[str, Any]) -> Path:
    path = sidecar_path(model_path)
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path
