"""Which backend a tool runs a model file on, and with which options.

The tools (eval, bench, bench pipeline) take model files; the backend follows the file's suffix
(``.onnx`` → ONNX Runtime, ``.xml`` → OpenVINO, ``.param`` → NCNN, ``.hef`` → Hailo) unless one
is named (``--backend openvino`` runs an ``.onnx`` on OpenVINO). A file may also carry its
backend: ``openvino:model.onnx``. Options go through the backend's own options model, so a
misspelt one is refused with the field named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from edged.backends.registry import UnknownBackend, backend_for_suffix, backend_spec, plugins
from edged.config import errors_from_validation
from edged.tools.errors import ToolError


def split_backend(model: str | Path) -> tuple[str | None, Path]:
    """``openvino:model.onnx`` → ("openvino", model.onnx); a bare path → (None, path)."""
    text = str(model)
    prefix, sep, rest = text.partition(":")
    if sep and prefix in plugins():
        return prefix, Path(rest)
    return None, Path(text)


def backend_name(model: str | Path, explicit: str | None = None) -> str:
    prefixed, path = split_backend(model)
    name = explicit or prefixed or backend_for_suffix(path)
    if name is None:
        suffixes = sorted({s for spec in plugins().values() for s in spec.default_for})
        raise ToolError(f"{path}: unknown model type (expected {', '.join(suffixes)})")
    try:
        backend_spec(name)
    except UnknownBackend as exc:
        raise ToolError(str(exc)) from None
    return name


def options_for(backend: str, threads: int | None = None, **settings: Any) -> BaseModel:
    """The backend's options: ``threads`` into its thread field, and each of ``settings`` the
    backend has (ORT's spin_wait means nothing to NCNN); ``None`` values are left default."""
    spec = backend_spec(backend)
    fields = {k: v for k, v in settings.items() if v is not None and k in spec.options.model_fields}
    if threads is not None and spec.threads_field:
        fields[spec.threads_field] = threads
    try:
        return spec.options.model_validate(fields)
    except ValidationError as exc:
        details = "; ".join(f"{p}: {r}" for p, r in errors_from_validation(exc))
        raise ToolError(f"{backend} options: {details}") from None


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` (VALUE read as YAML: true, 2, performance)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{text!r}: expected KEY=VALUE")
    return key.strip(), yaml.safe_load(value)
