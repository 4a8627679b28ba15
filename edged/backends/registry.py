"""The backend plugin registry: one :class:`BackendSpec` per runtime, keyed by its ``type``.

Like Frigate's detector plugins, each runtime owns its options model beside its code, in a light
``<name>_plugin`` module that imports no runtime (so validating a config or a manifest never
imports OpenVINO, NCNN or HailoRT); the runtime module itself is imported on the first load.
Adding a runtime = its plugin module + its backend module + one line in :data:`PLUGIN_MODULES`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

# The registry line per runtime: the module that defines its ``PLUGIN``.
PLUGIN_MODULES: tuple[str, ...] = (
    "edged.backends.onnxruntime_plugin",
    "edged.backends.openvino_plugin",
    "edged.backends.ncnn_plugin",
    "edged.backends.hailo_plugin",
)


class BackendOptions(BaseModel):
    """Base of every backend's options: a typo is an error naming the field."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


def no_companions(path: Path) -> tuple[Path, ...]:
    return ()


def weights_beside(path: Path) -> tuple[Path, ...]:
    """OpenVINO IR (``.xml``) and NCNN (``.param``) keep their weights in a ``.bin`` beside."""
    if path.suffix.lower() in (".xml", ".param"):
        return (path.with_suffix(".bin"),)
    return ()


@dataclass(frozen=True)
class BackendSpec:
    """What edged knows about a runtime before importing it."""

    name: str
    options: type[BackendOptions]
    loader: str  # "module:function", called as function(path, options) -> Backend
    suffixes: tuple[str, ...]  # the model files it loads, by suffix (lower case)
    runtime_module: str  # the Python package it needs (for "is it installed?")
    description: str
    companions: Callable[[Path], tuple[Path, ...]] = no_companions
    threads_field: str | None = None  # the option `edged run --threads` sets, if any
    # Suffixes this runtime is the default for when a bare model file is given (--model).
    default_for: tuple[str, ...] = field(default=())

    def installed(self) -> bool:
        return importlib.util.find_spec(self.runtime_module) is not None

    def model_files(self, path: Path) -> tuple[Path, ...]:
        """Every file loading ``path`` reads: the model and its companions."""
        return (path, *self.companions(path))


@cache
def plugins() -> dict[str, BackendSpec]:
    specs: dict[str, BackendSpec] = {}
    for module_name in PLUGIN_MODULES:
        spec: BackendSpec = importlib.import_module(module_name).PLUGIN
        specs[spec.name] = spec
    return specs


class UnknownBackend(ValueError):
    pass


def backend_spec(name: str) -> BackendSpec:
    known = plugins()
    if name not in known:
        raise UnknownBackend(f"unknown backend {name!r} (known: {', '.join(sorted(known))})")
    return known[name]


def backend_for_suffix(path: Path) -> str | None:
    suffix = path.suffix.lower()
    for spec in plugins().values():
        if suffix in spec.default_for:
            return spec.name
    return None


def loader_of(spec: BackendSpec) -> Callable[[Path, Any], Any]:
    module_name, attr = spec.loader.split(":")
    return getattr(importlib.import_module(module_name), attr)
