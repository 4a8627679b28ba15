"""Inference backends, keyed by ``type``: each loads a model, warms it up and runs raw inference."""

from edged.backends.base import (
    Backend,
    BackendBroken,
    BackendError,
    InFlightBackend,
    TensorSpec,
    load_backend,
    requests_in_flight,
)

__all__ = [
    "Backend",
    "BackendBroken",
    "BackendError",
    "InFlightBackend",
    "TensorSpec",
    "load_backend",
    "requests_in_flight",
]
