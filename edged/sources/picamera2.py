"""Raspberry Pi cameras (libcamera) through picamera2.

picamera2 and libcamera's Python bindings come from Raspberry Pi OS (``sudo apt install
python3-picamera2``), not from PyPI in a usable form, so edged's venv must be created with
``--system-site-packages``. The import is lazy: importing edged never needs a camera stack.

The camera runs a *video* configuration whose ``main`` stream is ``RGB888``. libcamera names
formats by their little-endian word order, so ``RGB888`` is stored ``[B, G, R]`` per pixel
(picamera2 manual, appendix A) — exactly OpenCV's BGR, no conversion needed. ``FrameDurationLimits``
pins the frame rate. ``read()`` takes the most recent completed frame (picamera2 keeps only the
latest request queued), so a slow consumer gets fresh frames rather than a backlog.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import logging
import os
from types import ModuleType
from typing import Any

import numpy as np

from edged.sources.base import SourceError, SourceInfo

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install the camera stack from Raspberry Pi OS with `sudo apt install python3-picamera2` "
    "and create edged's venv with `python3 -m venv --system-site-packages` so the system "
    "picamera2 and libcamera bindings are visible (pip cannot provide libcamera)"
)
NUMPY_HINT = (
    "Raspberry Pi OS builds picamera2's helpers (simplejpeg) against its own numpy 1.x: keep "
    "edged's venv on it (`pip install 'numpy<2' 'opencv-python-headless<4.12'`; "
    "`edged service install` does this when the system numpy is 1.x)"
)
DEFAULT_SIZE = (1280, 720)
DEFAULT_FRAME_TIMEOUT_S = 2.0


def import_picamera2() -> ModuleType:
    """Import picamera2; a missing package or missing libcamera becomes :class:`SourceError`."""
    try:
        return importlib.import_module("picamera2")
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing.split(".")[0] == "libcamera":
            raise SourceError(
                f"picamera2 is installed but libcamera's Python bindings are not importable "
                f"({exc}); {INSTALL_HINT}"
            ) from None
        raise SourceError(f"picamera2 is not installed ({exc}); {INSTALL_HINT}") from None
    except Exception as exc:  # an ABI mismatch: libcamera/picamera2, or numpy 2 in the venv
        raise SourceError(
            f"picamera2 failed to import ({type(exc).__name__}: {exc}); {import_hint(str(exc))}"
        ) from None


def import_hint(error: str) -> str:
    """What to do about a failed picamera2 import. The apt-built simplejpeg against numpy 2
    shows up as a ValueError ("numpy.dtype size changed") or an ImportError ("numpy.core.
    multiarray failed to import")."""
    return NUMPY_HINT if "numpy" in error else INSTALL_HINT


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def requested_size(
    width: int | None, height: int | None, sensor: tuple[int, int] | None
) -> tuple[int, int]:
    """The main-stream size to ask for: given size, or the other side from the sensor aspect."""
    if width and height:
        return _even(width), _even(height)
    if not width and not height:
        return DEFAULT_SIZE
    sensor_w, sensor_h = sensor or (16, 9)
    if width:
        return _even(width), _even(width * sensor_h / sensor_w)
    assert height is not None
    return _even(height * sensor_w / sensor_h), _even(height)


def _close_half_open(exc: BaseException) -> None:
    """Close the notification pipe of a ``Picamera2`` whose ``__init__`` failed.

    picamera2 opens that pipe before it acquires the camera and closes it only in ``close()``,
    which returns at once for a camera that never opened; its camera manager keeps the object
    alive. Each failed open (camera busy) would leak two descriptors, and a camera held by
    another process through a day of retries would exhaust them.
    """
    tb = exc.__traceback__
    while tb is not None:
        half = tb.tb_frame.f_locals.get("self")
        if type(half).__name__ == "Picamera2" and not getattr(half, "is_open", False):
            with contextlib.suppress(Exception):
                half.notifymeread.close()
            with contextlib.suppress(Exception):
                os.close(half.notifyme_w)
            return
        tb = tb.tb_next


def _flush(camera: Any) -> None:
    """Cancel the camera's pending jobs (``cancel_all_and_flush``, picamera2 ≥ 0.3.18)."""
    flush = getattr(camera, "cancel_all_and_flush", None)
    if flush is None:
        log.debug("this picamera2 has no cancel_all_and_flush; a stalled camera may not close")
        return
    try:
        flush()
    except Exception as exc:
        log.debug("picamera2 cancel_all_and_flush failed: %s", exc)


def continuous_autofocus() -> Any:
    """libcamera's ``AfModeEnum.Continuous`` (2 in libcamera's control ids)."""
    try:
        from libcamera import controls

        return controls.AfModeEnum.Continuous
    except (ImportError, AttributeError):
        return 2


class Picamera2Source:
    """A Raspberry Pi camera as a :class:`~edged.sources.base.FrameSource` of BGR frames."""

    def __init__(
        self,
        camera_index: int,
        width: int | None,
        height: int | None,
        fps: float | None,
        *,
        frame_timeout_s: float = DEFAULT_FRAME_TIMEOUT_S,
    ) -> None:
        self._camera: Any = None
        self._timeout_s = frame_timeout_s
        module = import_picamera2()
        picamera2_cls = module.Picamera2
        try:
            cameras = list(picamera2_cls.global_camera_info())
        except Exception as exc:
            raise SourceError(f"libcamera could not list cameras: {exc}") from None
        if not cameras:
            raise SourceError(
                "no camera detected by libcamera: check the ribbon cable and connector latch, "
                "then `rpicam-hello --list-cameras`"
            )
        if not 0 <= camera_index < len(cameras):
            found = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(cameras))
            raise SourceError(f"camera {camera_index} does not exist (libcamera sees {found})")
        model = cameras[camera_index].get("Model", "camera")
        try:
            camera = picamera2_cls(camera_index)
        except Exception as exc:
            _close_half_open(exc)
            raise SourceError(
                f"camera {camera_index} ({model}) could not be opened ({exc}); is it in use by "
                "another process (rpicam-*, another edged)?"
            ) from None
        self._camera = camera
        try:
            self.info = self._configure(camera, camera_index, model, width, height, fps)
        except SourceError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise SourceError(
                f"camera {camera_index} ({model}): configuration failed: {exc}"
            ) from None

    def _configure(
        self,
        camera: Any,
        index: int,
        model: str,
        width: int | None,
        height: int | None,
        fps: float | None,
    ) -> SourceInfo:
        sensor = getattr(camera, "sensor_resolution", None)
        size = requested_size(width, height, tuple(sensor) if sensor else None)
        controls: dict[str, Any] = {}
        if fps:
            frame_us = max(1, round(1_000_000 / fps))
            controls["FrameDurationLimits"] = (frame_us, frame_us)
        if "AfMode" in (getattr(camera, "camera_controls", None) or {}):
            # Camera Module 3: libcamera starts in manual focus; keep the scene in focus.
            controls["AfMode"] = continuous_autofocus()
        config = camera.create_video_configuration(
            main={"size": size, "format": "RGB888"},
            controls=controls,
            buffer_count=4,
            display=None,
            encode=None,
        )
        camera.configure(config)
        final = camera.camera_configuration() or config
        main = final["main"]
        if main.get("format") != "RGB888":
            raise SourceError(f"the camera delivers {main.get('format')}, not RGB888 (BGR)")
        actual_w, actual_h = (int(v) for v in main["size"])
        if (actual_w, actual_h) != size:
            log.info(
                "camera %d: %dx%d requested, libcamera chose %dx%d",
                index,
                *size,
                actual_w,
                actual_h,
            )
        limits = (final.get("controls") or {}).get("FrameDurationLimits") or controls.get(
            "FrameDurationLimits"
        )
        actual_fps = 1_000_000 / limits[0] if limits and limits[0] else float(fps or 30.0)
        camera.start()
        return SourceInfo(
            kind="picamera2",
            uri=f"picamera2:{index}",
            width=actual_w,
            height=actual_h,
            fps=actual_fps,
            live=True,
        )

    def read(self) -> np.ndarray | None:
        """The newest frame as BGR ``H×W×3`` uint8; :class:`SourceError` on a stall or failure."""
        camera = self._camera
        if camera is None:
            raise SourceError("camera is closed")
        try:
            job = camera.capture_array("main", wait=False)
            frame = job.get_result(timeout=self._timeout_s)
        except concurrent.futures.TimeoutError:
            _flush(camera)  # the stuck capture job would block stop()/close() forever
            raise SourceError(
                f"{self.info.uri}: no frame for {self._timeout_s:.1f} s (camera stalled or "
                "disconnected)"
            ) from None
        except Exception as exc:
            raise SourceError(f"{self.info.uri}: capture failed: {exc}") from None
        if frame.ndim != 3 or frame.shape[2] < 3:
            raise SourceError(f"{self.info.uri}: unexpected frame shape {frame.shape}")
        if frame.shape[2] != 3:
            frame = frame[:, :, :3]
        if not frame.flags.c_contiguous:
            frame = np.ascontiguousarray(frame)
        return frame

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        # picamera2's close() stops the camera itself, through its job queue: empty the queue
        # first, or a capture that never completed (a dislodged cable) blocks it for good.
        _flush(camera)
        try:
            camera.close()
        except Exception as exc:  # closing must not raise
            log.debug("picamera2 close failed: %s", exc)

    def __enter__(self) -> Picamera2Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
