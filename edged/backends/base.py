"""The backend contract and registry.

A backend turns a model file into something that takes one preprocessed input tensor and
returns the raw output arrays. Decoding lives in :mod:`edged.postprocess`, so backends stay
small and a new runtime only has to implement :class:`Backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


class BackendError(RuntimeError):
    """A model could not be loaded or run; the message says why in user terms."""


class BackendBroken(BackendError):
    """The backend cannot run any more frames (its device pipeline shut down or hung): the
    model must be loaded again. Bad input raises a plain :class:`BackendError` instead."""


@dataclass(frozen=True)
class TensorSpec:
    """A backend's input: ``NCHW`` (float 0–1 RGB) or ``NHWC`` (uint8 RGB)."""

    name: str
    width: int
    height: int
    layout: str = "NCHW"
    dtype: str = "float32"

    @property
    def shape(self) -> tuple[int, ...]:
        if self.layout == "NCHW":
            return (1, 3, self.height, self.width)
        return (1, self.height, self.width, 3)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@runtime_checkable
class Backend(Protocol):
    """What the inference stage needs from a runtime."""

    input: TensorSpec
    output_shapes: list[tuple[int, ...]]
    metadata: dict[str, str]
    precision: str

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run one input tensor, return the raw outputs (owned by the caller)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class InFlightBackend(Protocol):
    """A backend that runs several frames at once (OpenVINO's infer requests on CPU streams).

    ``submit`` starts one frame and returns at once; the outputs land in ``outputs`` (arrays the
    caller owns, e.g. a shared-memory slot) and ``on_done`` is called, from the runtime's own
    thread, when the frame is finished (or failed). ``wait`` blocks until then and raises if it
    failed. At most ``requests_in_flight`` frames may be submitted and not yet waited for.
    Backends without these methods run one frame at a time (``infer``/``infer_into``).
    """

    requests_in_flight: int

    def submit(
        self, tensor: np.ndarray, outputs: list[np.ndarray], on_done: Callable[[], None]
    ) -> object: ...

    def wait(self, handle: object) -> None: ...


def requests_in_flight(backend: Backend) -> int:
    """How many frames ``backend`` can run at once: 1 unless it is an :class:`InFlightBackend`
    with static output shapes (its outputs are written straight into the caller's arrays)."""
    if not isinstance(backend, InFlightBackend) or not getattr(backend, "static_outputs", False):
        return 1
    return max(1, int(backend.requests_in_flight))


def load_backend(
    name: str, path: Path, options: Any, warmup_runs: int = 1, in_flight: bool = False
) -> Backend:
    """Load a model with the named backend and warm it up with ``warmup_runs`` blank inputs.

    ``in_flight``: the caller keeps several frames in flight (the daemon's inference stage), so
    a backend's ``requests`` may be more than one; every other caller (the tools, the Frigate
    detector) runs one frame after another, and gets one request with the whole thread budget
    whatever ``requests`` says (several would only split the threads).
    """
    if not in_flight and getattr(options, "requests", None) not in (None, 1):
        options = options.model_copy(update={"requests": 1})
    from edged.backends.registry import UnknownBackend, backend_spec, loader_of

    try:
        spec = backend_spec(name)
    except UnknownBackend as exc:
        raise BackendError(str(exc)) from None
    if not spec.installed():
        raise BackendError(
            f"{path.name}: backend {name!r} needs the Python package {spec.runtime_module!r}, "
            f"which is not installed (pip install 'edged[{name}]')"
        )
    backend = loader_of(spec)(path, options)
    try:
        blank = np.zeros(backend.input.shape, dtype=backend.input.dtype)
        for _ in range(warmup_runs):
            backend.infer(blank)
    except BackendError:
        backend.close()
        raise
    except Exception as exc:
        backend.close()
        raise BackendError(f"{path.name}: warm-up inference failed: {exc}") from exc
    return backend
