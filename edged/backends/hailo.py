"""Hailo-8 / Hailo-8L NPU backend through HailoRT's Python API (``hailo_platform``, 4.18+).

How it uses HailoRT (the InferModel API, as in pyhailort and picamera2's Hailo helper):

* one ``VDevice`` per process, created lazily with the ROUND_ROBIN scheduler and shared by every
  model this process loads (a second ``VDevice`` in the same process would fail with
  ``HAILO_OUT_OF_PHYSICAL_DEVICES``, and sharing lets the old and new variant of a hot swap live
  side by side on the chip);
* ``vdevice.create_infer_model(hef)``; input format UINT8 (the letterboxed RGB ``H×W×3`` frame,
  no normalisation — the HEF quantises on the chip), every output FLOAT32; ``configure()``;
* per frame: fresh ``create_bindings(output_buffers=...)`` over pre-allocated numpy buffers
  (fresh bindings because pyhailort re-points a binding's buffers at its own DMA copies during
  ``run_async``), ``wait_for_async_ready`` then ``run_async([bindings], callback)``. The callback
  runs on HailoRT's callback thread, converts the outputs and frees the buffer slot.

:meth:`HailoBackend.infer` is synchronous (submit + wait, bounded by ``timeout_ms``);
:meth:`HailoBackend.infer_async` returns a :class:`HailoJob` so the inference stage can submit
frame *n+1* before collecting frame *n* and keep the NPU busy while the host works.

Outputs: HEFs compiled with NMS give one dense ``K×6`` float32 array (``class_id, y_min, x_min,
y_max, x_max, score`` normalised to the HEF input) — ``output_shapes == [(-1, 6)]`` so
:func:`edged.postprocess.decoders.detect_layout` picks ``HAILO_NMS`` and the letterbox is undone on
the host. HEFs without NMS give their raw FLOAT32 tensors (batch dimension added) for the shared
decoders.

Errors (no device, device busy, HEF for the other chip, timeouts, driver trouble) become
:class:`~edged.backends.hailo_errors.HailoBackendError` with a message saying what to do; no call
waits longer than ``timeout_ms``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edged.backends.base import BackendBroken, BackendError, TensorSpec
from edged.backends.hailo_device import MIN_HAILORT
from edged.backends.hailo_errors import (
    HailoBackendBroken,
    HailoBackendError,
    HailoFailure,
    explain,
)
from edged.backends.hailo_nms import empty_dense, nms_to_dense, raw_by_class_to_dense
from edged.backends.hailo_plugin import HailoOptions
from edged.versions import installed_version, parse_version

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install HailoRT from Raspberry Pi OS (`sudo apt install hailo-all`, then reboot) and create "
    "edged's venv with `python3 -m venv --system-site-packages` so `hailo_platform` is visible "
    "(it is not on PyPI)"
)
# Cap on frames in flight per model; HailoRT's own queue size is usually smaller.
MAX_IN_FLIGHT = 8


# ---------------------------------------------------------------------------------------------
# hailo_platform import and version
# ---------------------------------------------------------------------------------------------


def hailort_version(module: ModuleType) -> str | None:
    """The HailoRT version a ``hailo_platform`` module reports (``__version__``)."""
    return installed_version(module, "hailort")


def import_hailo_platform() -> ModuleType:
    """Import ``hailo_platform`` and check it is a supported HailoRT (4.18+ with InferModel).

    Raises:
        BackendError: not installed, too old, or lacking the InferModel API.
    """
    try:
        module = importlib.import_module("hailo_platform")
    except ImportError as exc:
        raise BackendError(
            f"HailoRT's Python package is not available ({exc}); {INSTALL_HINT}"
        ) from None
    except Exception as exc:  # pyhailort raises on a _pyhailort/libhailort version mismatch
        raise BackendError(
            f"HailoRT's Python package failed to load ({type(exc).__name__}: {exc}); "
            "the hailort library, driver and Python package versions must match: reinstall "
            "`hailo-all` and reboot"
        ) from None
    text = hailort_version(module)
    version = parse_version(text) if text else None
    if version is None or version < MIN_HAILORT:
        found = text or "an unknown version"
        raise BackendError(
            f"HailoRT {found} is too old: edged needs HailoRT "
            f"{'.'.join(map(str, MIN_HAILORT))} or newer (the async InferModel API); "
            "`sudo apt update && sudo apt full-upgrade` on Raspberry Pi OS Bookworm"
        )
    if not hasattr(getattr(module, "VDevice", None), "create_infer_model"):
        raise BackendError(f"HailoRT {text} lacks VDevice.create_infer_model; {INSTALL_HINT}")
    return module


# ---------------------------------------------------------------------------------------------
# The process-wide VDevice
# ---------------------------------------------------------------------------------------------


def _select_device(params: Any, device_id: str | None) -> None:
    """Put ``device_id`` into the VDevice params (:class:`BackendError` when these bindings
    cannot).

    ``VDevice(params, device_ids=[…])`` looks equivalent but is not: HailoRT then builds fresh
    default params for those devices (``VDeviceWrapper::create`` → ``create_from_ids``), which
    turns the model scheduler off, and edged's models run only under the scheduler.
    """
    if not device_id:
        return
    try:
        params.device_ids = [device_id]
    except (AttributeError, TypeError):
        raise BackendError(
            f"this HailoRT cannot choose device {device_id} without turning its model scheduler "
            "off; leave inference.hailo.device_id unset (one Hailo device) or update HailoRT"
        ) from None


class SharedVDevice:
    """One reference-counted ``VDevice`` per process (round-robin scheduler).

    HailoRT objects must not cross ``fork``: a child process that finds a VDevice created by its
    parent drops the reference and opens its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vdevice: Any = None
        self._refs = 0
        self._pid = 0
        self._key: tuple[str | None, bool, str | None] | None = None

    @property
    def refs(self) -> int:
        return self._refs if self._pid == os.getpid() else 0

    def acquire(
        self,
        hp: ModuleType,
        device_id: str | None,
        multi_process_service: bool = False,
        group_id: str | None = None,
    ) -> Any:
        key = (device_id, multi_process_service, group_id)
        with self._lock:
            if self._pid != os.getpid():
                self._vdevice, self._refs, self._key = None, 0, None
                self._pid = os.getpid()
            if self._vdevice is not None:
                if key != self._key:
                    raise BackendError(
                        f"this process already uses the Hailo VDevice with {self._describe()}; "
                        "all Hailo models of one process share it, so their device_id / "
                        "multi-process settings must agree"
                    )
                self._refs += 1
                return self._vdevice
            params = hp.VDevice.create_params()
            params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
            if multi_process_service:
                params.multi_process_service = True
                params.group_id = group_id or "SHARED"
            _select_device(params, device_id)
            vdevice = hp.VDevice(params)
            self._vdevice, self._refs, self._key = vdevice, 1, key
            return vdevice

    def release(self) -> None:
        with self._lock:
            if self._pid != os.getpid() or self._vdevice is None:
                return
            self._refs -= 1
            if self._refs > 0:
                return
            vdevice, self._vdevice, self._refs, self._key = self._vdevice, None, 0, None
        try:
            vdevice.release()
        except Exception as exc:  # releasing must never take the stage down
            log.warning("releasing the Hailo VDevice failed: %s", exc)

    def _describe(self) -> str:
        device_id, mps, group = self._key or (None, False, None)
        return f"device_id={device_id!r}, multi_process_service={mps}, group_id={group!r}"


SHARED_VDEVICE = SharedVDevice()


# ---------------------------------------------------------------------------------------------
# Jobs and buffer slots
# ---------------------------------------------------------------------------------------------


@dataclass
class _OutputInfo:
    name: str
    shape: tuple[int, ...]  # host buffer shape (no batch dimension)
    is_nms: bool
    num_classes: int | None


class _Slot:
    """Pre-allocated input and output buffers for one frame in flight."""

    def __init__(self, input_shape: tuple[int, ...], outputs: list[_OutputInfo]) -> None:
        self.input = np.zeros(input_shape, np.uint8)
        self.outputs = {o.name: np.zeros(o.shape, np.float32) for o in outputs}


class HailoJob:
    """A frame submitted to the NPU: ``result()`` waits (bounded) for its outputs."""

    def __init__(self, hef_name: str, timeout_s: float) -> None:
        self._hef_name = hef_name
        self._timeout_s = timeout_s
        self._event = threading.Event()
        self._outputs: list[np.ndarray] | None = None
        self._error: BaseException | None = None
        self.submitted_at = time.perf_counter()
        self.completed_at: float | None = None

    def done(self) -> bool:
        return self._event.is_set()

    @property
    def latency_s(self) -> float | None:
        """Submit → HailoRT completion callback (the NPU round trip), once done."""
        if self.completed_at is None:
            return None
        return self.completed_at - self.submitted_at

    def result(self, timeout: float | None = None) -> list[np.ndarray]:
        """The outputs; raises :class:`BackendError` on failure or after ``timeout`` seconds.

        ``timeout=None`` means the backend's ``timeout_ms``; it never waits forever.
        """
        limit = self._timeout_s if timeout is None else timeout
        if not self._event.wait(limit):
            raise HailoBackendError(
                f"{self._hef_name}: inference: no result from the Hailo device within "
                f"{limit * 1000:.0f} ms (device hung, overheated or overloaded)",
                HailoFailure.TIMEOUT,
            )
        if self._error is not None:
            raise self._error
        assert self._outputs is not None
        return self._outputs

    def _finish(self, outputs: list[np.ndarray] | None, error: BaseException | None) -> None:
        self.completed_at = time.perf_counter()
        self._outputs, self._error = outputs, error
        self._event.set()


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


class HailoBackend:
    """A HEF on the shared VDevice, fed uint8 NHWC, giving FLOAT32 outputs."""

    precision = "int8"

    def __init__(
        self,
        path: Path,
        options: HailoOptions,
        *,
        hailo_platform: ModuleType | None = None,
        shared: SharedVDevice | None = None,
    ) -> None:
        self.path = Path(path)
        self._name = self.path.name
        self._timeout_ms = int(options.timeout_ms)
        self._shared = shared or SHARED_VDEVICE
        self._hp = hailo_platform or import_hailo_platform()
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()
        self._slots_cv = threading.Condition()
        self._free: list[_Slot] = []
        self._in_flight = 0
        self._closed = False
        self._broken: str | None = None  # why HailoRT's pipeline is gone, once it is
        self.last_latency_s: float | None = None
        self.version = hailort_version(self._hp) or "unknown"

        if not self.path.is_file():
            raise BackendError(f"{self._name}: HEF file not found: {self.path}")
        try:
            self._vdevice = self._shared.acquire(
                self._hp,
                options.device_id,
                bool(getattr(options, "multi_process_service", False)),
                getattr(options, "group_id", None),
            )
        except BackendError:
            raise
        except Exception as exc:
            raise explain(exc, self._name, "opening the Hailo device") from None
        try:
            self._open(options)
        except BaseException as exc:
            self._stack.close()
            self._shared.release()
            if isinstance(exc, BackendError) or not isinstance(exc, Exception):
                raise
            raise explain(exc, self._name, "loading the HEF") from None

    # -- loading -------------------------------------------------------------------------------

    def _open(self, options: HailoOptions) -> None:
        hp = self._hp
        model = self._vdevice.create_infer_model(str(self.path))
        self._infer_model = model
        model.set_batch_size(int(options.batch_size))
        input_names = list(model.input_names)
        if len(input_names) != 1:
            raise BackendError(
                f"{self._name}: expected one image input, the HEF has {len(input_names)} "
                f"({', '.join(input_names)})"
            )
        model_input = model.input()
        model_input.set_format_type(hp.FormatType.UINT8)
        in_shape = _shape_tuple(model_input.shape)
        if len(in_shape) != 3 or in_shape[2] != 3:
            raise BackendError(
                f"{self._name}: unsupported input shape {in_shape}; expected H×W×3 (an RGB image)"
            )
        height, width, _ = in_shape
        self.input = TensorSpec(
            input_names[0], width=width, height=height, layout="NHWC", dtype="uint8"
        )
        self._input_shape = in_shape

        nms_infos = self._nms_infos(model)
        self._outputs: list[_OutputInfo] = []
        for name in model.output_names:
            stream = model.output(name)
            stream.set_format_type(hp.FormatType.FLOAT32)
            is_nms = bool(stream.is_nms)
            info = nms_infos.get(name, (None, None))
            self._outputs.append(
                _OutputInfo(name, _shape_tuple(stream.shape), is_nms, info[0] if is_nms else None)
            )
        if not self._outputs:
            raise BackendError(f"{self._name}: the HEF has no outputs")
        self.is_nms = any(o.is_nms for o in self._outputs)
        if self.is_nms and len(self._outputs) != 1:
            raise BackendError(
                f"{self._name}: {len(self._outputs)} outputs with NMS; edged supports HEFs "
                "whose NMS output is the only output (detection models)"
            )

        configured = model.configure()
        self._configured = self._stack.enter_context(configured)
        queue = MAX_IN_FLIGHT
        with contextlib.suppress(Exception):
            queue = int(self._configured.get_async_queue_size())
        self._queue_size = max(1, min(queue, MAX_IN_FLIGHT))
        self._free = [_Slot(in_shape, self._outputs) for _ in range(self._queue_size)]

        if self.is_nms:
            self.output_shapes: list[tuple[int, ...]] = [(-1, 6)]
        else:
            self.output_shapes = [self._raw_output_shape(o.shape) for o in self._outputs]
        num_classes = next((o.num_classes for o in self._outputs if o.num_classes), None)
        self.metadata: dict[str, str] = {
            "backend": "hailo",
            "hef": self._name,
            "hailort_version": self.version,
            "input_name": self.input.name,
            "outputs": ",".join(o.name for o in self._outputs),
            "nms": "true" if self.is_nms else "false",
        }
        if num_classes:
            self.metadata["num_classes"] = str(num_classes)
        arch = self._device_architecture()
        if arch:
            self.metadata["device_architecture"] = arch
        self.device_architecture = arch

    @staticmethod
    def _nms_infos(model: Any) -> dict[str, tuple[int | None, int | None]]:
        """``{output: (number_of_classes, max_bboxes_per_class)}`` from the HEF, if readable."""
        infos: dict[str, tuple[int | None, int | None]] = {}
        with contextlib.suppress(Exception):
            for info in model.hef.get_output_vstream_infos():
                nms_shape = getattr(info, "nms_shape", None)
                if nms_shape is not None:
                    infos[info.name] = (
                        int(nms_shape.number_of_classes),
                        int(nms_shape.max_bboxes_per_class),
                    )
        return infos

    @staticmethod
    def _raw_output_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
        """Host shape → the shape edged reports: batch dim added, a unit height dropped.

        ``(H, W, C)`` → ``(1, H, W, C)``; ``(1, N, K)`` → ``(1, N, K)`` (a 2-D tensor that HailoRT
        describes as an image one row high); ``(F,)`` → ``(1, F)``.
        """
        if len(shape) == 3 and shape[0] == 1:
            return (1, shape[1], shape[2])
        return (1, *shape)

    def _device_architecture(self) -> str | None:
        """``HAILO8`` / ``HAILO8L`` of the chip behind the VDevice, when HailoRT tells."""
        with contextlib.suppress(Exception):
            for device in self._vdevice.get_physical_devices():
                return str(device.control.identify().device_architecture)
        return None

    # -- inference -----------------------------------------------------------------------------

    def _take_slot(self, deadline: float) -> _Slot:
        with self._slots_cv:
            while not self._free:
                if self._closed:
                    raise BackendError(f"{self._name}: the backend is closed")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HailoBackendError(
                        f"{self._name}: inference: {self._queue_size} frame(s) in flight and "
                        f"none completed within {self._timeout_ms} ms (device hung or overloaded)",
                        HailoFailure.TIMEOUT,
                    )
                self._slots_cv.wait(left)
            self._in_flight += 1
            return self._free.pop()

    def _give_slot(self, slot: _Slot) -> None:
        with self._slots_cv:
            self._free.append(slot)
            self._in_flight -= 1
            self._slots_cv.notify_all()

    def _check_tensor(self, tensor: np.ndarray) -> np.ndarray:
        frame = np.asarray(tensor)
        if frame.ndim == 4 and frame.shape[0] == 1:
            frame = frame[0]
        if frame.shape != self._input_shape:
            raise BackendError(
                f"{self._name}: input shape {tuple(np.shape(tensor))} does not match the HEF "
                f"input (1, {self._input_shape[0]}, {self._input_shape[1]}, 3) NHWC"
            )
        if frame.dtype != np.uint8:
            raise BackendError(f"{self._name}: input dtype {frame.dtype} is not uint8")
        return frame

    def infer_async(self, tensor: np.ndarray) -> HailoJob:
        """Submit one ``1×H×W×3`` uint8 RGB frame; returns at once with a :class:`HailoJob`.

        The frame is copied, so the caller may reuse ``tensor`` immediately. Blocks (bounded by
        ``timeout_ms``) only while all in-flight slots are busy.
        """
        if self._closed:
            raise BackendError(f"{self._name}: the backend is closed")
        if self._broken is not None:
            raise BackendBroken(f"{self._name}: unusable since an earlier failure: {self._broken}")
        frame = self._check_tensor(tensor)
        timeout_s = self._timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        slot = self._take_slot(deadline)
        job = HailoJob(self._name, timeout_s)
        try:
            np.copyto(slot.input, frame)
            with self._lock:
                bindings = self._configured.create_bindings(output_buffers=slot.outputs)
                bindings.input().set_buffer(slot.input)
                left_ms = max(1, int((deadline - time.monotonic()) * 1000))
                self._configured.wait_for_async_ready(timeout_ms=left_ms)
                job.submitted_at = time.perf_counter()
                self._configured.run_async(
                    [bindings],
                    lambda completion_info: self._on_done(job, slot, bindings, completion_info),
                )
        except BaseException as exc:
            self._give_slot(slot)
            if isinstance(exc, BackendError) or not isinstance(exc, Exception):
                raise
            raise explain(exc, self._name, "submitting a frame") from None
        return job

    def _on_done(self, job: HailoJob, slot: _Slot, bindings: Any, completion_info: Any) -> None:
        """HailoRT's completion callback (its callback thread): convert, free the slot, signal."""
        outputs: list[np.ndarray] | None = None
        error: BaseException | None = None
        try:
            exc = getattr(completion_info, "exception", None)
            if exc is not None:
                error = explain(exc, self._name, "inference")
            else:
                outputs = self._collect(slot, bindings)
        except Exception as exc:  # never let an exception escape into HailoRT's thread
            error = BackendError(f"{self._name}: reading the Hailo outputs failed: {exc}")
        finally:
            self._give_slot(slot)
            job._finish(outputs, error)
            if job.latency_s is not None:
                self.last_latency_s = job.latency_s

    def _collect(self, slot: _Slot, bindings: Any) -> list[np.ndarray]:
        result = []
        for info in self._outputs:
            if info.is_nms:
                result.append(self._nms_output(slot, bindings, info))
            else:
                raw = slot.outputs[info.name]
                result.append(raw.reshape(self._raw_output_shape(info.shape)).copy())
        return result

    def _nms_output(self, slot: _Slot, bindings: Any, info: _OutputInfo) -> np.ndarray:
        try:
            dense = nms_to_dense(bindings.output(info.name).get_buffer(), info.num_classes)
        except Exception:
            if info.num_classes is None:
                raise
            dense = raw_by_class_to_dense(slot.outputs[info.name], info.num_classes)
        return np.array(dense, dtype=np.float32, copy=True) if dense.size else empty_dense()

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run one ``1×H×W×3`` uint8 RGB frame and wait (at most ``timeout_ms``) for the outputs.

        A HailoRT failure or timeout raises :class:`BackendBroken`: HailoRT shuts a configured
        model's pipeline down on an error ("In case of an error, the pipeline will be shut
        down", ``ConfiguredInferModel.run_async``), and a frame that never completes keeps its
        buffers; only a fresh load serves again.
        """
        try:
            return self.infer_async(tensor).result()
        except HailoBackendError as exc:
            self._broken = str(exc)
            raise HailoBackendBroken(str(exc), exc.failure) from None

    def close(self) -> None:
        """Wait (bounded) for frames in flight, unload the model, release the shared VDevice."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self._timeout_ms / 1000
        with self._slots_cv:
            self._slots_cv.notify_all()
            while self._in_flight > 0 and time.monotonic() < deadline:
                self._slots_cv.wait(max(0.0, deadline - time.monotonic()))
            stuck = self._in_flight
        if stuck:
            log.warning("%s: closing with %d frame(s) still on the Hailo device", self._name, stuck)
        with contextlib.suppress(Exception):
            if hasattr(self._configured, "shutdown"):
                self._configured.shutdown()
        try:
            self._stack.close()
        except Exception as exc:
            log.warning("%s: unloading the model failed: %s", self._name, exc)
        # Drop HailoRT objects before the VDevice: an InferModel keeps its VDevice alive.
        self._configured = None
        self._infer_model = None
        self._free = []
        self._shared.release()

    def __enter__(self) -> HailoBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_hailo(path: Path, options: HailoOptions) -> HailoBackend:
    """Registry factory for ``type: hailo``."""
    return HailoBackend(path, options)
