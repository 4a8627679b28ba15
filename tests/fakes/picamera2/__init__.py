"""A test double of picamera2's ``Picamera2`` — the call surface edged's source uses.

Signatures follow picamera2 0.3.x (``picamera2/picamera2.py``, ``picamera2/job.py``):
``Picamera2.global_camera_info()``, ``Picamera2(camera_num=0, verbose_console=None,
tuning=None)``, ``sensor_resolution``, ``camera_controls``, ``create_video_configuration(main={},
lores=None, raw={}, transform=..., colour_space=None, buffer_count=6, controls={},
display="main", encode="main", queue=True)``, ``align_configuration``, ``configure``,
``camera_configuration()``, ``start()``, ``stop()``, ``close()``, ``capture_array(name="main",
wait=None, signal_function=None)`` (``wait=False`` returns a :class:`Job` whose
``get_result(timeout=None)`` blocks), ``set_controls``.

Like the real library it imports ``libcamera`` at import time, so hiding ``libcamera`` makes the
import fail the way a venv without ``--system-site-packages`` does.

Frames show a fixed scene — left half pure red, right half pure blue (real-world colours) — laid
out in memory the way libcamera names formats: ``RGB888`` is ``[B, G, R]`` per pixel (OpenCV's
BGR), ``BGR888`` is ``[R, G, B]``, ``XRGB8888`` ``[B, G, R, 255]``, ``XBGR8888`` ``[R, G, B, 255]``.
The green channel of pixel (0, 0) holds the frame sequence number modulo 256. Frames are paced by
``FrameDurationLimits``.

Configuration: module attribute ``FAKE`` (:class:`FakeConfig`), initialised from
``EDGED_FAKE_PICAMERA2_CAMERAS`` (number of cameras, default 1), ``EDGED_FAKE_PICAMERA2_BUSY``
(``1``: opening fails as when another process holds the camera), ``EDGED_FAKE_PICAMERA2_STALL``
(``1``: frames never arrive), ``EDGED_FAKE_PICAMERA2_FAIL_AFTER`` (frames before capture fails).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import libcamera
import numpy as np

__all__ = ["FAKE", "Job", "Picamera2"]

SENSORS = [
    {
        "Model": "imx708",
        "Location": 2,
        "Rotation": 180,
        "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a",
        "resolution": (4608, 2592),
    },
    {
        "Model": "imx477",
        "Location": 2,
        "Rotation": 180,
        "Id": "/base/axi/pcie@120000/rp1/i2c@80000/imx477@1a",
        "resolution": (4056, 3040),
    },
]
FORMATS = {"RGB888": 3, "BGR888": 3, "XRGB8888": 4, "XBGR8888": 4, "YUV420": 1}


@dataclass
class FakeConfig:
    cameras: int = 1
    busy: bool = False
    stall: bool = False
    fail_after: int | None = None
    stop_wait_s: float = 3.0  # how long stop() waits behind a job that never completes
    hung_stops: int = 0  # stop() calls that would have hung forever on the real library
    opened: list[int] = field(default_factory=list)
    configs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_env(cls) -> FakeConfig:
        env = os.environ
        fail = env.get("EDGED_FAKE_PICAMERA2_FAIL_AFTER")
        return cls(
            cameras=int(env.get("EDGED_FAKE_PICAMERA2_CAMERAS", "1")),
            busy=env.get("EDGED_FAKE_PICAMERA2_BUSY") == "1",
            stall=env.get("EDGED_FAKE_PICAMERA2_STALL") == "1",
            fail_after=int(fail) if fail else None,
        )


FAKE = FakeConfig.from_env()
_OPEN: set[int] = set()
_CAMERA_MANAGER: list[Any] = []  # picamera2's Picamera2._cm holds every camera object
_OPEN_LOCK = threading.Lock()


class Job:
    """An operation for the camera event loop; ``get_result`` blocks until it is done."""

    def __init__(self) -> None:
        self._future: Future[Any] = Future()
        self._future.set_running_or_notify_cancel()

    def get_result(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout=timeout)

    def cancel(self) -> None:
        from concurrent.futures import CancelledError

        if not self._future.done():
            self._future.set_exception(CancelledError())


def _finished(job: Job, timeout: float) -> bool:
    try:
        job._future.exception(timeout=timeout)
    except Exception:  # TimeoutError: still pending; CancelledError cannot happen (set_exception)
        return job._future.done()
    return True


def _scene(width: int, height: int, fmt: str, seq: int) -> np.ndarray:
    channels = FORMATS[fmt]
    frame = np.zeros((height, width, channels), np.uint8)
    half = width // 2
    red_index, blue_index = (2, 0) if fmt in ("RGB888", "XRGB8888") else (0, 2)
    frame[:, :half, red_index] = 255
    frame[:, half:, blue_index] = 255
    if channels == 4:
        frame[:, :, 3] = 255
    frame[0, 0, 1] = seq % 256
    return frame


class Picamera2:
    """Welcome to the (fake) PiCamera2 class."""

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [
            {k: v for k, v in sensor.items() if k != "resolution"} | {"Num": i}
            for i, sensor in enumerate(SENSORS[: FAKE.cameras])
        ]

    def __init__(
        self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None
    ) -> None:
        self.camera = None
        self.started = False
        self.camera_config: dict[str, Any] | None = None
        self._seq = 0
        self._timers: list[threading.Timer] = []
        # Like picamera2: its notification pipe is opened before the camera is acquired, and
        # its camera manager keeps a reference to the object even when that fails.
        self.notifyme_r, self.notifyme_w = os.pipe2(os.O_NONBLOCK)
        self.notifymeread = os.fdopen(self.notifyme_r, "rb")
        _CAMERA_MANAGER.append(self)
        self.is_open = False
        try:
            if FAKE.cameras == 0:
                raise RuntimeError(
                    "Camera(s) not found "
                    "(Do not forget to disable legacy camera with raspi-config)."
                )
            sensor = SENSORS[camera_num]  # IndexError past the last camera, as libcamera's list
            if camera_num >= FAKE.cameras:
                raise IndexError("list index out of range")
            with _OPEN_LOCK:
                if FAKE.busy or camera_num in _OPEN:
                    raise RuntimeError("Failed to acquire camera: Device or resource busy")
                _OPEN.add(camera_num)
        except Exception:
            raise RuntimeError("Camera __init__ sequence did not complete.") from None
        self.camera = sensor
        self.is_open = True
        self.camera_idx = camera_num
        self.sensor_resolution = sensor["resolution"]
        self.camera_properties = {"Model": sensor["Model"], "PixelArraySize": sensor["resolution"]}
        self.camera_controls = {
            "FrameDurationLimits": (8333, 2000000000, 33333),
            "NoiseReductionMode": (0, 4, 0),
        }
        if SENSORS[camera_num]["Model"] == "imx708":  # Camera Module 3 focuses; the HQ does not
            self.camera_controls["AfMode"] = (0, 2, 0)
        self._job_list: list[Job] = []
        self.controls: dict[str, Any] = {}
        FAKE.opened.append(camera_num)

    # -- configuration -----------------------------------------------------------------------

    @staticmethod
    def align_configuration(config: dict[str, Any], optimal: bool = True) -> None:
        align = 32 if optimal else 2
        w, h = config["main"]["size"]
        config["main"]["size"] = (w - w % align, h - h % 2)

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
    ) -> dict[str, Any]:
        if self.camera is None:
            raise RuntimeError("Camera not opened")
        main = {"format": "XBGR8888", "size": (1280, 720)} | dict(main or {})
        w, h = main["size"]
        main["size"] = (w - w % 2, h - h % 2)
        if colour_space is None:
            small = main["size"][0] < 1280 or main["size"][1] < 720
            colour_space = (
                libcamera.ColorSpace.Smpte170m() if small else libcamera.ColorSpace.Rec709()
            )
        return {
            "use_case": "video",
            "transform": transform or libcamera.Transform(),
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main,
            "lores": lores,
            "raw": raw,
            "controls": {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}
            | dict(controls or {}),
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in camera_config.items()}
        main = config["main"]
        if main["format"] not in FORMATS:
            raise RuntimeError(f"Bad format {main['format']} in stream main")
        w, h = main["size"]
        if w % 2 or h % 2:
            raise RuntimeError("width and height should be even")
        max_w, max_h = self.sensor_resolution
        w, h = min(w, max_w), min(h, max_h)  # libcamera adjusts oversize requests
        main["size"] = (w, h)
        main["stride"] = w * FORMATS[main["format"]]
        main["framesize"] = main["stride"] * h
        self.camera_config = config
        self.controls = dict(config.get("controls") or {})
        FAKE.configs.append(config)

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.controls.update(controls)

    # -- running -----------------------------------------------------------------------------

    def start(self, config: Any = None, show_preview: bool | None = False) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        # The real stop() queues a job behind those pending and waits for it; the event loop
        # runs jobs only as frames arrive, so behind a capture that never completes it waits
        # forever (cancel_all_and_flush() is the way out). Here: wait a while, then count it.
        pending = [job for job in self._job_list if not job._future.done()]
        if pending:
            done = all(_finished(job, FAKE.stop_wait_s) for job in pending)
            if not done:
                FAKE.hung_stops += 1
        self.started = False
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def cancel_all_and_flush(self) -> None:
        """Cancel every pending job and empty the queue (picamera2 ≥ 0.3.18)."""
        for job in self._job_list:
            job.cancel()
        self._job_list = []

    def close(self) -> None:
        if not self.is_open:  # picamera2: a camera that never opened returns at once
            return
        self.is_open = False
        if self.started:
            self.stop()
        with _OPEN_LOCK:
            _OPEN.discard(self.camera_idx)
        self.camera = None
        self.notifymeread.close()
        os.close(self.notifyme_w)

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _frame_interval(self) -> float:
        limits = self.controls.get("FrameDurationLimits", (33333, 33333))
        return max(int(limits[0]), 1) / 1_000_000

    def capture_array(
        self, name: str = "main", wait: Any = None, signal_function: Any = None
    ) -> Any:
        """A 2-D image (H×W×C numpy array) from the next frame of the named stream."""
        job = Job()
        self._job_list.append(job)
        if self.started and not FAKE.stall and self.camera_config is not None:
            stream = self.camera_config.get(name)
            if stream is None:
                job._future.set_exception(KeyError(name))
            else:
                self._seq += 1
                seq = self._seq
                if FAKE.fail_after is not None and seq > FAKE.fail_after:
                    job._future.set_exception(RuntimeError("Camera frontend has timed out!"))
                else:
                    w, h = stream["size"]
                    frame = _scene(w, h, stream["format"], seq)

                    def deliver() -> None:
                        if not job._future.done():
                            job._future.set_result(frame)
                            if signal_function is not None:
                                signal_function(job)
                        if job in self._job_list:
                            self._job_list.remove(job)

                    timer = threading.Timer(self._frame_interval(), deliver)
                    timer.daemon = True
                    self._timers = [t for t in self._timers if t.is_alive()] + [timer]
                    timer.start()
        # not started / stalled: like the real event loop, the job never completes
        if wait is None:
            wait = signal_function is None
        return job.get_result() if wait else job

    def wait(self, job: Job, timeout: float | None = None) -> Any:
        return job.get_result(timeout=timeout)
