"""A test double of HailoRT's ``hailo_platform`` (pyhailort) — the call surface edged uses.

Names and signatures follow pyhailort 4.18–4.2x (``hailo_platform/pyhailort/pyhailort.py``):
``VDevice(params=None, *, device_ids=None)``, ``VDevice.create_params()``,
``create_infer_model(hef_source, network_name="")``, ``InferModel.input()/output()/inputs/
outputs/input_names/output_names/hef/set_batch_size/configure()``, ``InferStream.shape/format/
set_format_type/is_nms``, ``ConfiguredInferModel`` (context manager) with ``create_bindings(
input_buffers=None, output_buffers=None)``, ``wait_for_async_ready(timeout_ms=1000,
frames_count=1)``, ``run_async(bindings, callback=None)`` → ``AsyncInferJob.wait(timeout_ms)``,
``get_async_queue_size()``, ``shutdown()``; ``Bindings.input()/output()`` with
``set_buffer``/``get_buffer(tf_format=False)``; ``Device.scan()``, ``Device(device_id=None)``,
``device.control.get_chip_temperature()`` / ``identify()``; ``HEF(path)`` vstream infos with
``nms_shape``; the ``HailoRTException`` family.

What it simulates (deterministically):

* NMS HEFs write HailoRT's raw by-class float32 buffer (per class: count, then count ×
  ``y_min, x_min, y_max, x_max, score``) into the bound output buffer; ``get_buffer()`` converts it
  like pyhailort does: a per-class list of ``(n, 5)`` arrays (4.19+), wrapped in a one-element
  list when ``__version__`` is 4.18 (as 4.18's ``output_raw_buffer_to_nms_format`` does).
* Completion callbacks run on a worker thread after ``latency_ms``, called as
  ``callback(completion_info=AsyncInferCompletionInfo(exception))``.
* A process may hold one ``VDevice`` per physical device; a second one raises
  ``HAILO_OUT_OF_PHYSICAL_DEVICES`` like the real library.
* Errors selected by ``FAKE.error``: ``no_device``, ``busy``, ``arch_mismatch``, ``timeout``
  (jobs never complete), ``driver``, ``invalid_hef``, ``infer_error`` (callback reports failure,
  and the configured model is shut down, as HailoRT shuts its pipeline down on an error).

Configuration: module attribute ``FAKE`` (a :class:`FakeConfig`), initialised from environment
variables so a spawned process (``PYTHONPATH=tests/fakes``) can be steered too:

``EDGED_FAKE_HAILO_VERSION`` (``4.20.0``), ``EDGED_FAKE_HAILO_ARCH`` (``HAILO8L``),
``EDGED_FAKE_HAILO_ERROR`` (empty), ``EDGED_FAKE_HAILO_LATENCY_MS`` (``2``),
``EDGED_FAKE_HAILO_DEVICES`` (``1``), ``EDGED_FAKE_HAILO_TEMPERATURE`` (``52.5``),
``EDGED_FAKE_HAILO_FAIL_AT`` (the N-th inference of a process fails once, as ``infer_error``),
``EDGED_FAKE_HAILO_DETECTIONS`` (JSON list of ``[class_id, y_min, x_min, y_max, x_max, score]``),
``EDGED_FAKE_HAILO_DEVICE_LOCK`` (a file standing for ``/dev/hailo0``: a process holding a
``VDevice`` holds an exclusive lock on it, and a ``VDevice`` in another process fails with
``HAILO_DEVICE_IN_USE``, as without HailoRT's multi-process service; unset: no such check).

A HEF is any file; if it holds JSON it describes the model (anything omitted takes the default of
a yolov8s HEF for Hailo-8L with NMS): ``{"arch": "HAILO8L", "input": {"name": ..., "shape":
[640, 640, 3]}, "outputs": [{"name": ..., "nms": {"classes": 80, "max_bboxes_per_class": 100}}
| {"name": ..., "shape": [h, w, c], "fill": 0.5}], "detections": [[...], ...]}``.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FAKE",
    "HEF",
    "AsyncInferJob",
    "ConfiguredInferModel",
    "Device",
    "FormatOrder",
    "FormatType",
    "HailoRTException",
    "HailoRTNetworkGroupNotActivatedException",
    "HailoRTTimeout",
    "HailoSchedulingAlgorithm",
    "InferModel",
    "VDevice",
]

DEFAULT_DETECTIONS: list[list[float]] = [
    # class, y_min, x_min, y_max, x_max, score (normalised to the HEF input)
    [0, 0.25, 0.125, 0.75, 0.375, 0.91],  # person
    [2, 0.5, 0.5, 0.625, 0.75, 0.62],  # car
    [16, 0.1, 0.6, 0.3, 0.9, 0.15],  # dog, low score
]
DEFAULT_HEF: dict[str, Any] = {
    "arch": "HAILO8L",
    "input": {"name": "yolov8s/input_layer1", "shape": [640, 640, 3]},
    "outputs": [
        {
            "name": "yolov8s/yolov8_nms_postprocess",
            "nms": {"classes": 80, "max_bboxes_per_class": 100},
        }
    ],
}
BBOX_PARAMS = 5


@dataclass
class FakeConfig:
    version: str = "4.20.0"
    arch: str = "HAILO8L"
    error: str = ""
    latency_ms: float = 2.0
    devices: int = 1
    temperature: float = 52.5
    queue_size: int = 4
    detections: list[list[float]] | None = None
    fail_at: int | None = None  # the Nth inference of the process fails (once), as infer_error
    calls: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> FakeConfig:
        env = os.environ
        dets = env.get("EDGED_FAKE_HAILO_DETECTIONS")
        return cls(
            version=env.get("EDGED_FAKE_HAILO_VERSION", "4.20.0"),
            arch=env.get("EDGED_FAKE_HAILO_ARCH", "HAILO8L"),
            error=env.get("EDGED_FAKE_HAILO_ERROR", ""),
            latency_ms=float(env.get("EDGED_FAKE_HAILO_LATENCY_MS", "2")),
            devices=int(env.get("EDGED_FAKE_HAILO_DEVICES", "1")),
            temperature=float(env.get("EDGED_FAKE_HAILO_TEMPERATURE", "52.5")),
            detections=json.loads(dets) if dets else None,
            fail_at=int(env["EDGED_FAKE_HAILO_FAIL_AT"])
            if env.get("EDGED_FAKE_HAILO_FAIL_AT")
            else None,
        )

    def count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1


FAKE = FakeConfig.from_env()
__version__ = FAKE.version


def set_version(version: str) -> None:
    """Change the reported HailoRT version (tests)."""
    global __version__
    FAKE.version = version
    __version__ = version


def _version_tuple() -> tuple[int, ...]:
    return tuple(int(p) for p in FAKE.version.split(".")[:3])


# ---------------------------------------------------------------------------------------------
# Exceptions (pyhailort names; texts as ExceptionWrapper.create_exception_from_status builds them)
# ---------------------------------------------------------------------------------------------


class HailoRTException(Exception):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTNotFoundException(HailoRTException):
    pass


class HailoRTNetworkGroupNotActivatedException(HailoRTException):
    pass


class HailoRTInvalidArgumentException(HailoRTException):
    pass


class HailoRTInvalidOperationException(HailoRTException):
    pass


class HailoRTInvalidHEFException(HailoRTException):
    pass


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


class HailoRTDriverOperationFailedException(HailoRTException):
    pass


HailoRTPCIeDriverException = HailoRTDriverOperationFailedException


def _status_error(code: int, name: str) -> HailoRTException:
    return HailoRTException(f"libhailort failed with error: {code} ({name})")


def _arch_error(hef_arch: str) -> HailoRTException:
    if _version_tuple() >= (4, 20):
        return HailoRTHEFNotCompatibleWithDevice(
            "HEF file is not compatible with device. See hailort.log for more information"
        )
    return _status_error(93, "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE")


# ---------------------------------------------------------------------------------------------
# Enums and small records
# ---------------------------------------------------------------------------------------------


class HailoSchedulingAlgorithm(IntEnum):
    NONE = 0
    ROUND_ROBIN = 1


class FormatType(IntEnum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class FormatOrder(IntEnum):
    AUTO = 0
    NHWC = 1
    NHCW = 2
    FCR = 3
    NC = 6
    HAILO_NMS = 12  # 4.18 name of the by-class NMS order
    HAILO_NMS_BY_CLASS = 12  # alias (4.19+ name)
    HAILO_NMS_WITH_BYTE_MASK = 17
    HAILO_NMS_BY_SCORE = 22


class DeviceArchitectureTypes(IntEnum):
    HAILO8_A0 = 0
    HAILO8 = 1
    HAILO8L = 2
    HAILO15H = 3
    HAILO15L = 4
    HAILO15M = 5
    HAILO10H = 6

    def __str__(self) -> str:
        return self.name


@dataclass
class _Format:
    type: FormatType
    order: FormatOrder


@dataclass
class _NmsShape:
    number_of_classes: int
    max_bboxes_per_class: int


@dataclass
class _VStreamInfo:
    name: str
    shape: tuple[int, ...]
    format: _Format
    nms_shape: _NmsShape | None = None


@dataclass
class TemperatureInfo:
    ts0_temperature: float
    ts1_temperature: float
    sample_count: int


@dataclass
class BoardInformation:
    device_architecture: DeviceArchitectureTypes
    firmware_version: str
    serial_number: str
    product_name: str
    board_name: str = "Hailo-8"


class AsyncInferCompletionInfo:
    def __init__(self, exception: BaseException | None) -> None:
        self._exception = exception

    @property
    def exception(self) -> BaseException | None:
        return self._exception


# ---------------------------------------------------------------------------------------------
# HEF
# ---------------------------------------------------------------------------------------------


def _load_hef_description(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise _status_error(61, "HAILO_NOT_FOUND") from None
    except (OSError, UnicodeDecodeError):
        text = ""
    desc = dict(DEFAULT_HEF)
    if text.strip():
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            loaded = None
        if isinstance(loaded, dict):
            desc.update(loaded)
        elif text.strip() == "corrupt":
            raise HailoRTInvalidHEFException("Invalid HEF. See hailort.log for more information")
    return desc


class HEF:
    def __init__(self, hef_source: str | bytes) -> None:
        if isinstance(hef_source, bytes):
            raise HailoRTInvalidArgumentException("fake HEF needs a path")
        self._path = str(hef_source)
        self._desc = _load_hef_description(self._path)

    @property
    def path(self) -> str:
        return self._path

    def get_network_group_names(self) -> list[str]:
        return [Path(self._path).stem]

    def get_input_vstream_infos(self, name: str | None = None) -> list[_VStreamInfo]:
        inp = self._desc["input"]
        return [
            _VStreamInfo(
                inp["name"], tuple(inp["shape"]), _Format(FormatType.UINT8, FormatOrder.NHWC)
            )
        ]

    def get_output_vstream_infos(self, name: str | None = None) -> list[_VStreamInfo]:
        infos = []
        for out in self._desc["outputs"]:
            if "nms" in out:
                nms = _NmsShape(out["nms"]["classes"], out["nms"]["max_bboxes_per_class"])
                size = nms.number_of_classes * (nms.max_bboxes_per_class * BBOX_PARAMS + 1)
                order = FormatOrder.HAILO_NMS_BY_CLASS
                infos.append(
                    _VStreamInfo(out["name"], (size,), _Format(FormatType.FLOAT32, order), nms)
                )
            else:
                fmt = _Format(FormatType.UINT8, FormatOrder.NHWC)
                infos.append(_VStreamInfo(out["name"], tuple(out["shape"]), fmt))
        return infos


# ---------------------------------------------------------------------------------------------
# Device (control handle) and VDevice
# ---------------------------------------------------------------------------------------------

_STATE_LOCK = threading.Lock()
_OPEN_VDEVICES = {"count": 0}


def _device_ids() -> list[str]:
    if FAKE.error == "no_device":
        return []
    return [f"0000:0{i + 1}:00.0" for i in range(FAKE.devices)]


class _Control:
    def __init__(self, device: Device) -> None:
        self._device = device

    def get_chip_temperature(self) -> TemperatureInfo:
        self._device._check_open()
        FAKE.count("get_chip_temperature")
        return TemperatureInfo(FAKE.temperature, FAKE.temperature - 0.5, 7)

    def identify(self) -> BoardInformation:
        self._device._check_open()
        return BoardInformation(
            DeviceArchitectureTypes[FAKE.arch],
            f"{FAKE.version} (release,app,extended context switch buffer)",
            "HLLWM2B233400000",
            "HAILO-8L AI ACC M.2 B+M KEY MODULE EXT TMP" if FAKE.arch == "HAILO8L" else "HAILO-8",
        )


class Device:
    """Hailo device object representation (for inference use VDevice)."""

    @classmethod
    def scan(cls) -> list[str]:
        return _device_ids()

    def __init__(self, device_id: str | None = None) -> None:
        self._device = None
        if FAKE.error == "driver":
            raise HailoRTDriverOperationFailedException(
                "Failure in hailort driver ioctl. run 'dmesg | grep hailo' for more information"
            )
        ids = _device_ids()
        if device_id is None:
            if not ids:
                raise HailoRTException("HailoRT device not found in the system")
            device_id = ids[0]
        elif device_id not in ids:
            raise _status_error(61, "HAILO_NOT_FOUND")
        self._device_id = device_id
        self._device = object()
        self._control = _Control(self)
        FAKE.count("Device")

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def control(self) -> _Control:
        return self._control

    def _check_open(self) -> None:
        if self._device is None:
            raise HailoRTException("device released")

    def release(self) -> None:
        self._device = None

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *args: object) -> bool:
        self.release()
        return False


@dataclass
class VDeviceParams:
    device_count: int = 1
    scheduling_algorithm: HailoSchedulingAlgorithm = HailoSchedulingAlgorithm.ROUND_ROBIN
    group_id: str = "UNIQUE"
    multi_process_service: bool = False
    device_ids: list[str] = field(default_factory=list)  # the ``device_ids`` property


_DEVICE_FD: dict[str, int | None] = {"fd": None}  # this process's hold on the device lock


def _claim_device() -> None:
    """The device is this process's (EDGED_FAKE_HAILO_DEVICE_LOCK), or HAILO_DEVICE_IN_USE."""
    path = os.environ.get("EDGED_FAKE_HAILO_DEVICE_LOCK")
    if not path or _DEVICE_FD["fd"] is not None:
        return
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _status_error(73, "HAILO_DEVICE_IN_USE") from None
    _DEVICE_FD["fd"] = fd


def _unclaim_device() -> None:
    fd, _DEVICE_FD["fd"] = _DEVICE_FD["fd"], None
    if fd is not None:
        os.close(fd)  # the lock goes with it (and with the process, if it dies)


class VDevice:
    """Hailo virtual device representation."""

    def __init__(
        self, params: VDeviceParams | None = None, *, device_ids: list[str] | None = None
    ) -> None:
        self._vdevice = None
        if device_ids:
            # HailoRT's VDeviceWrapper::create(params, device_ids) → create_from_ids(): fresh
            # default params for those devices, scheduler off; the params passed are dropped.
            params = VDeviceParams(
                scheduling_algorithm=HailoSchedulingAlgorithm.NONE, device_ids=list(device_ids)
            )
        self._params = params or VDevice.create_params()
        device_ids = self._params.device_ids
        self._creation_pid = os.getpid()
        FAKE.count("VDevice")
        if FAKE.error == "driver":
            raise _status_error(76, "HAILO_INVALID_DRIVER_VERSION")
        if FAKE.error == "busy":
            raise _status_error(73, "HAILO_DEVICE_IN_USE")
        available = _device_ids()
        if device_ids:
            missing = [d for d in device_ids if d not in available]
            if missing:
                raise _status_error(61, "HAILO_NOT_FOUND")
            available = list(device_ids)
        with _STATE_LOCK:
            free = len(available) - _OPEN_VDEVICES["count"]
            if free < self._params.device_count:
                raise _status_error(74, "HAILO_OUT_OF_PHYSICAL_DEVICES")
            _claim_device()
            _OPEN_VDEVICES["count"] += 1
        self._ids = available[: self._params.device_count]
        self._vdevice = object()
        self.infer_models: list[InferModel] = []

    @staticmethod
    def create_params() -> VDeviceParams:
        return VDeviceParams()

    @property
    def params(self) -> VDeviceParams:
        return self._params

    def release(self) -> None:
        if self._vdevice is not None:
            self._vdevice = None
            with _STATE_LOCK:
                _OPEN_VDEVICES["count"] -= 1
                if not _OPEN_VDEVICES["count"]:
                    _unclaim_device()

    def __enter__(self) -> VDevice:
        return self

    def __exit__(self, *args: object) -> bool:
        self.release()
        return False

    def __del__(self) -> None:
        self.release()

    def get_physical_devices_ids(self) -> list[str]:
        return list(self._ids)

    def get_physical_devices(self) -> list[Device]:
        return [Device(dev_id) for dev_id in self.get_physical_devices_ids()]

    def create_infer_model(self, hef_source: str | bytes, network_name: str = "") -> InferModel:
        if os.getpid() != self._creation_pid:
            raise HailoRTException(
                "InferModel can be created only from the process VDevice was created in."
            )
        if self._vdevice is None:
            raise HailoRTException("VDevice released")
        if FAKE.error == "invalid_hef":
            raise HailoRTInvalidHEFException("Invalid HEF. See hailort.log for more information")
        model = InferModel(self, HEF(hef_source), str(hef_source))
        self.infer_models.append(model)
        FAKE.count("create_infer_model")
        return model


# ---------------------------------------------------------------------------------------------
# InferModel / ConfiguredInferModel / Bindings
# ---------------------------------------------------------------------------------------------


class InferModel:
    class InferStream:
        def __init__(self, info: _VStreamInfo) -> None:
            self._info = info
            self._format = _Format(info.format.type, info.format.order)

        @property
        def name(self) -> str:
            return self._info.name

        @property
        def shape(self) -> list[int]:
            return list(self._info.shape)

        @property
        def format(self) -> _Format:
            return self._format

        def set_format_type(self, type: FormatType) -> None:
            self._format.type = FormatType(type)

        def set_format_order(self, order: FormatOrder) -> None:
            self._format.order = FormatOrder(order)

        @property
        def is_nms(self) -> bool:
            return self._info.nms_shape is not None

        @property
        def quant_infos(self) -> list[Any]:
            return []

        def set_nms_score_threshold(self, threshold: float) -> None:
            self._score_threshold = threshold

        def set_nms_iou_threshold(self, threshold: float) -> None:
            self._iou_threshold = threshold

        def set_nms_max_proposals_per_class(self, max_proposals: int) -> None:
            self._max_proposals = max_proposals

    def __init__(self, vdevice: VDevice, hef: HEF, hef_path: str) -> None:
        self._vdevice = vdevice
        self._hef = hef
        self._hef_path = hef_path
        self._inputs = [self.InferStream(i) for i in hef.get_input_vstream_infos()]
        self._outputs = [self.InferStream(o) for o in hef.get_output_vstream_infos()]
        self.batch_size = 0

    @property
    def hef(self) -> HEF:
        return self._hef

    def set_batch_size(self, batch_size: int) -> None:
        self.batch_size = batch_size

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self._inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self._outputs]

    @property
    def inputs(self) -> list[InferModel.InferStream]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[InferModel.InferStream]:
        return list(self._outputs)

    def _stream(self, streams: list[InferModel.InferStream], name: str) -> InferModel.InferStream:
        if name == "":
            if len(streams) != 1:
                raise HailoRTNotFoundException(
                    "Item not found. See hailort.log for more information"
                )
            return streams[0]
        for stream in streams:
            if stream.name == name:
                return stream
        raise HailoRTNotFoundException("Item not found. See hailort.log for more information")

    def input(self, name: str = "") -> InferModel.InferStream:
        return self._stream(self._inputs, name)

    def output(self, name: str = "") -> InferModel.InferStream:
        return self._stream(self._outputs, name)

    def configure(self) -> ConfiguredInferModel:
        if self._vdevice._vdevice is None:
            raise HailoRTException("VDevice released")
        hef_arch = str(self._hef._desc.get("arch", "HAILO8L"))
        # libhailort's is_hef_compatible: a Hailo-8 also runs Hailo-8L HEFs (with a warning).
        runs = {FAKE.arch} | ({"HAILO8L"} if FAKE.arch == "HAILO8" else set())
        if FAKE.error == "arch_mismatch" or hef_arch not in runs:
            raise _arch_error(hef_arch)
        for stream in self._inputs:
            if stream.format.type not in (FormatType.UINT8, FormatType.AUTO):
                raise HailoRTInvalidArgumentException("fake: inputs must be UINT8")
        FAKE.count("configure")
        return ConfiguredInferModel(self)


class AsyncInferJob:
    def __init__(self, done: threading.Event) -> None:
        self._done = done

    def wait(self, timeout_ms: int) -> None:
        if not self._done.wait(timeout_ms / 1000):
            raise HailoRTTimeout(
                "Received a timeout - hailort has failed because a timeout had occurred"
            )


class ConfiguredInferModel:
    class Bindings:
        class InferStream:
            def __init__(self, info: _VStreamInfo | None, nms: _NmsShape | None = None) -> None:
                self._info = info
                self._nms = nms
                self._buffer: np.ndarray | None = None

            def set_buffer(self, buffer: np.ndarray) -> None:
                if not buffer.flags.c_contiguous:
                    raise HailoRTException("Buffer must be C_CONTIGUOUS")
                self._buffer = buffer

            def get_buffer(self, tf_format: bool | None = False) -> Any:
                buffer = self._buffer
                if tf_format is None or self._nms is None or buffer is None:
                    return buffer
                if tf_format:
                    raise HailoRTException("fake: tf_format not simulated")
                per_class = _raw_to_per_class(buffer, self._nms.number_of_classes)
                if _version_tuple() < (4, 19):
                    return [per_class]  # 4.18 returns a batch of one frame
                return per_class

        def __init__(self, model: InferModel) -> None:
            self._model = model
            self._inputs = {s.name: self.InferStream(s._info) for s in model._inputs}
            self._outputs = {
                s.name: self.InferStream(s._info, s._info.nms_shape) for s in model._outputs
            }

        def _pick(self, streams: dict[str, Any], name: str) -> Any:
            if name == "" and len(streams) == 1:
                return next(iter(streams.values()))
            if name not in streams:
                raise HailoRTNotFoundException(
                    "Item not found. See hailort.log for more information"
                )
            return streams[name]

        def input(self, name: str = "") -> ConfiguredInferModel.Bindings.InferStream:
            return self._pick(self._inputs, name)

        def output(self, name: str = "") -> ConfiguredInferModel.Bindings.InferStream:
            return self._pick(self._outputs, name)

        def get(self) -> ConfiguredInferModel.Bindings:
            return self

    def __init__(self, model: InferModel) -> None:
        self._model = model
        self._configured = True
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending = 0
        self._cv = threading.Condition()
        self._thread = threading.Thread(
            target=self._worker, name="fake-hailort-callbacks", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> ConfiguredInferModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self._configured = False

    def create_bindings(
        self,
        input_buffers: dict[str, np.ndarray] | None = None,
        output_buffers: dict[str, np.ndarray] | None = None,
    ) -> ConfiguredInferModel.Bindings:
        bindings = self.Bindings(self._model)
        for name, buffer in (input_buffers or {}).items():
            bindings.input(name).set_buffer(buffer)
        for name, buffer in (output_buffers or {}).items():
            bindings.output(name).set_buffer(buffer)
        return bindings

    def get_async_queue_size(self) -> int:
        return FAKE.queue_size

    def wait_for_async_ready(self, timeout_ms: int = 1000, frames_count: int = 1) -> None:
        deadline = time.monotonic() + timeout_ms / 1000
        with self._cv:
            while self._pending + frames_count > FAKE.queue_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HailoRTTimeout(
                        "Received a timeout - hailort has failed because a timeout had occurred"
                    )
                self._cv.wait(left)

    def run(self, bindings: list[Any], timeout: int) -> None:
        self.run_async(bindings).wait(timeout)

    def run_async(self, bindings: list[Any], callback: Any = None) -> AsyncInferJob:
        if not self._configured:
            raise HailoRTException("ConfiguredInferModel was shut down")
        if self._model._vdevice.params.scheduling_algorithm == HailoSchedulingAlgorithm.NONE:
            # Without the model scheduler a model runs only once activated by hand.
            raise HailoRTNetworkGroupNotActivatedException("Network group is not activated")
        for b in bindings:
            self._validate(b)
        with self._cv:
            if self._pending + len(bindings) > FAKE.queue_size:
                raise _status_error(82, "HAILO_QUEUE_IS_FULL")
            self._pending += len(bindings)
        done = threading.Event()
        FAKE.count("run_async")
        fail = FAKE.calls["run_async"] == FAKE.fail_at
        due = time.monotonic() + FAKE.latency_ms / 1000
        self._queue.put((list(bindings), callback, done, due, fail))
        return AsyncInferJob(done)

    def _validate(self, bindings: ConfiguredInferModel.Bindings) -> None:
        for stream in self._model._inputs:
            buf = bindings.input(stream.name)._buffer
            expected = int(np.prod(stream.shape))
            if buf is None or buf.dtype != np.uint8 or buf.size != expected:
                raise HailoRTInvalidArgumentException(
                    f"Invalid argument. input {stream.name}: expected {expected} uint8 values"
                )
        for stream in self._model._outputs:
            buf = bindings.output(stream.name)._buffer
            expected = int(np.prod(stream.shape))
            if stream.format.type != FormatType.FLOAT32:
                raise HailoRTInvalidArgumentException("fake: outputs are only simulated as FLOAT32")
            if buf is None or buf.dtype != np.float32 or buf.size != expected:
                raise HailoRTInvalidArgumentException(
                    f"Invalid argument. output {stream.name}: expected {expected} float32 values"
                )

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            bindings, callback, done, due, fail = item
            if FAKE.error == "timeout":
                continue  # the device never answers: no callback, job.wait() times out
            delay = due - time.monotonic()
            if delay > 0:
                threading.Event().wait(delay)
            error = None
            if FAKE.error == "infer_error" or fail:
                error = _status_error(6, "HAILO_INVALID_OPERATION")
                self._configured = False  # like HailoRT: an error shuts the pipeline down
            else:
                for b in bindings:
                    self._fill_outputs(b)
            with self._cv:
                self._pending -= len(bindings)
                self._cv.notify_all()
            if callback is not None:
                callback(completion_info=AsyncInferCompletionInfo(error))
            done.set()

    def _fill_outputs(self, bindings: ConfiguredInferModel.Bindings) -> None:
        desc = self._model.hef._desc
        frame = bindings.input()._buffer
        for spec, stream in zip(desc["outputs"], self._model._outputs, strict=True):
            out = bindings.output(stream.name)._buffer
            assert out is not None
            if "nms" in spec:
                dets = desc.get("detections") or FAKE.detections or DEFAULT_DETECTIONS
                nms = stream._info.nms_shape
                assert nms is not None
                out.reshape(-1)[:] = _dense_to_raw(np.asarray(dets, np.float32), nms)
            else:
                fill = spec.get("fill")
                if fill is None:  # input-dependent so tests can see frames are really sent
                    out.reshape(-1)[:] = float(frame.mean()) / 255.0 if frame is not None else 0.0
                else:
                    out.reshape(-1)[:] = float(fill)

    def set_scheduler_timeout(self, timeout_ms: int) -> None:
        pass

    def set_scheduler_threshold(self, threshold: int) -> None:
        pass

    def set_scheduler_priority(self, priority: int) -> None:
        pass

    def shutdown(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=2)
        self._configured = False


def _dense_to_raw(dense: np.ndarray, nms: _NmsShape) -> np.ndarray:
    raw = np.zeros(nms.number_of_classes * (nms.max_bboxes_per_class * BBOX_PARAMS + 1), np.float32)
    offset = 0
    dense = dense.reshape(-1, 6)
    for class_id in range(nms.number_of_classes):
        rows = dense[dense[:, 0].astype(int) == class_id][: nms.max_bboxes_per_class, 1:]
        raw[offset] = rows.shape[0]
        offset += 1
        raw[offset : offset + rows.size] = rows.reshape(-1)
        offset += rows.size
    return raw


def _raw_to_per_class(raw: np.ndarray, number_of_classes: int) -> list[np.ndarray]:
    """pyhailort's ``output_raw_buffer_to_nms_format_single_frame``."""
    flat = raw.reshape(-1)
    out = []
    offset = 0
    for _ in range(number_of_classes):
        count = int(flat[offset])
        offset += 1
        if count == 0:
            out.append(np.empty([0, BBOX_PARAMS]))
        else:
            out.append(flat[offset : offset + BBOX_PARAMS * count].reshape(count, BBOX_PARAMS))
            offset += BBOX_PARAMS * count
    return out


class HailoStreamInterface(Enum):
    PCIe = 0
    INTEGRATED = 3
