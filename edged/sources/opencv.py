"""Video files, network streams (RTSP/HTTP/TCP/UDP) and V4L2 cameras through OpenCV."""

from __future__ import annotations

import os

import cv2
import numpy as np

from edged.sources.base import SourceError, SourceInfo

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "tcp://", "udp://", "rtmp://")


def classify_uri(uri: str) -> str:
    """``file``, ``stream`` or ``v4l2`` for an OpenCV-readable URI."""
    if uri.startswith(STREAM_SCHEMES):
        return "stream"
    if uri.isdigit() or uri.startswith("/dev/video"):
        return "v4l2"
    return "file"


class OpenCVSource:
    """``cv2.VideoCapture`` with FFmpeg for files/streams and V4L2 for local cameras."""

    def __init__(
        self,
        uri: str,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        open_timeout_s: float = 10.0,
    ) -> None:
        kind = classify_uri(uri)
        if kind == "file" and not os.path.isfile(uri):
            raise SourceError(f"video file not found: {uri}")
        if kind == "v4l2":
            target: int | str = int(uri) if uri.isdigit() else uri
            self._cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
            # MJPG lets USB cameras deliver full resolution at full rate over USB 2.
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
            if width:
                self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                self._cap.set(cv2.CAP_PROP_FPS, fps)
            self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(open_timeout_s * 1000),
            ]  # fmt: skip
            self._cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open {kind} source {uri!r}")
        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        reported_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0)
        if not 0 < reported_fps < 1000:
            reported_fps = 25.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "file" else None
        self.info = SourceInfo(
            kind, uri, w, h, fps or reported_fps, live=kind != "file", frame_count=count
        )

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            if self.info.kind == "file":
                return None
            raise SourceError(f"{self.info.kind} source {self.info.uri!r} stopped delivering")
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        return frame

    def close(self) -> None:
        self._cap.release()
