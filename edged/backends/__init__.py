"""Inference backends, keyed by ``type``: each loads a model, warms it up and runs raw inference."""

from edged.backends.base import (
    Backend,
    BackendBroken,
    BackendError,
    TensorSpec,
    load_backend,
)

__all__ = [
    "Backend",
    "BackendBroken",
    "BackendError",
    "TensorSpec",
    "load_backend",
]
