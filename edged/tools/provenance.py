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
    """The ONNX ``metadata_props`` of a model (names, stride, edged_precision, ...)."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def model_identity(path: str | Path) -> dict[str, str]:
    """What results are keyed by: file, content hash, precision, and the FP32 source's hash."""
    p = Path(path)
    metadata = read_metadata(p)
    sha = sha256_file(p)
    return {
        "model": str(p),
        "name": p.stem,
        "sha256": sha,
        "precision": precision_of(metadata),
        "source_sha256": metadata.get(SOURCE_SHA_METADATA_KEY, sha),
    }


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
