"""Video files, network streams (RTSP/HTTP/TCP/UDP) and V4L2 cameras through OpenCV.

Network streams go through OpenCV's FFmpeg backend with both of its timeouts set
(``CAP_PROP_OPEN_TIMEOUT_MSEC``, ``CAP_PROP_READ_TIMEOUT_MSEC``): FFmpeg's interrupt callback
then aborts a connect that nobody answers and a read that receives no frame, instead of
blocking forever. The capture stage additionally times every call out on its own clock (see
``edged.pipeline.stages.capture``), which also covers backends without such timeouts.
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from edged.redact import redact_uri
from edged.sources.base import OPEN_TIMEOUT_S, SourceError, SourceInfo, SourceUnusable
from edged.sources.kinds import classify_uri

log = logging.getLogger(__name__)

if "OPENCV_LOG_LEVEL" not in os.environ:
    # OpenCV prints its own WARN lines to stderr (the journal) for every failed open; edged logs
    # what failed and why once, so only OpenCV's errors get through (OPENCV_LOG_LEVEL overrides).
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

DEFAULT_READ_TIMEOUT_S = 10.0


def to_bgr8(frame: np.ndarray) -> np.ndarray:
    """Any frame OpenCV may hand out (grey, grey H×W×1, BGRA, 16-bit) as BGR ``H×W×3`` uint8.

    Shapes that are not an image at all are returned unchanged; the capture stage refuses them
    with a clear error.
    """
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


class OpenCVSource:
    """``cv2.VideoCapture`` with FFmpeg for files/streams and V4L2 for local cameras."""

    def __init__(
        self,
        uri: str,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        read_timeout_s: float | None = None,
        decode_threads: int | None = None,
    ) -> None:
        kind = classify_uri(uri)
        shown = redact_uri(uri)  # what errors, logs and status may show: no credentials
        if kind == "file" and not os.path.isfile(uri):
            raise SourceUnusable(f"video file not found: {uri}")
        if read_timeout_s is None:
            read_timeout_s = max(open_timeout_s, DEFAULT_READ_TIMEOUT_S)
        if kind == "v4l2":
            target: int | str = int(uri) if uri.isdigit() else uri
            self._cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
            # MJPG lets USB cameras deliver full resolution at full rate over USB 2.
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
            if bool(width) != bool(height):  # V4L2 applies a size only once both sides are set
                log.warning("%s: source.width and source.height apply to a V4L2 camera only "
                            "together; using the camera's default size", uri)  # fmt: skip
            if width and height:
                self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                self._cap.set(cv2.CAP_PROP_FPS, fps)
            # Two driver buffers: the camera fills one while edged decodes the other. With one,
            # the frame in flight is lost at every read and a 30 fps camera delivers ~15.
            self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 2)
        else:
            # Both timeouts verified with opencv-python-headless 5.0 against a TCP server that
            # accepts and stays silent (open fails after the open timeout) and an FFmpeg stream
            # that is paused mid-run (read fails after the read timeout).
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, int(open_timeout_s * 1000)),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, int(read_timeout_s * 1000)),
            ]  # fmt: skip
            if decode_threads:
                params += [cv2.CAP_PROP_N_THREADS, decode_threads]
            self._cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
        if not self._cap.isOpened():
            self._cap.release()
            failure = SourceUnusable if kind == "file" else SourceError  # files do not come back
            raise failure(f"cannot open {kind} source {shown!r}")
        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        reported_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0)
        if not 0 < reported_fps < 1000:
            reported_fps = 25.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "file" else None
        self.info = SourceInfo(
            kind, shown, w, h, fps or reported_fps, live=kind != "file", frame_count=count
        )

    def read(self) -> np.ndarray | None:
        return self.read_into(None)

    def read_into(self, out: np.ndarray | None) -> np.ndarray | None:
        """The next frame, decoded straight into ``out`` when it has the frame's shape (then
        ``out`` itself is returned); otherwise into a new array."""
        try:
            ok, frame = self._cap.read(image=out) if out is not None else self._cap.read()
        except cv2.error as exc:
            # cv2's message may repeat the URI: redact the whole text
            message = f"{self.info.kind} source {self.info.uri!r}: {exc}"
            raise SourceError(redact_uri(message)) from None
        if not ok or frame is None:
            if self.info.kind == "file":
                return None
            raise SourceError(f"{self.info.kind} source {self.info.uri!r} stopped delivering")
        return to_bgr8(frame)

    def close(self) -> None:
        self._cap.release()
