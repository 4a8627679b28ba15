"""Annotate and JPEG-encode preview frames on a background thread; the caller never waits.

The handoff holds one job: the publish loop checks :attr:`PreviewEncoder.busy` before it even
copies a frame, so a slow encode makes the preview skip frames instead of delaying detections.
cv2's drawing and ``imencode`` release the GIL, so the encode overlaps the publish loop.
Results go back to the publish loop over an inproc socket (ZeroMQ sockets are single-threaded:
only the loop that owns the publishers may send on them), which also wakes its poller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import zmq

from edged.preview.annotate import Overlay, annotate, hud_text
from edged.preview.wire import build_header, encode_header

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    image: np.ndarray  # a private BGR copy at preview size
    message: dict[str, Any]  # the frame's detections message, as published
    fps: float
    overlays: tuple[Overlay, ...] = ()  # tracking zones and lines


class RateMeter:
    """Events per second over the last ``window_s`` seconds (at most ``size`` events kept)."""

    def __init__(self, window_s: float = 5.0, size: int = 128) -> None:
        self.window_s = window_s
        self.times: deque[float] = deque(maxlen=size)

    def tick(self, now: float) -> None:
        self.times.append(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        recent = [t for t in self.times if now - t <= self.window_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


def encode_jpeg(job: Job, quality: int) -> tuple[bytes, bytes]:
    """(header JSON, JPEG) for one job: draw the detections and status line, then encode."""
    image, message = job.image, job.message
    source = (message["source"]["width"], message["source"]["height"])
    annotate(image, message["detections"], source, hud_text(message, job.fps), job.overlays)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    h, w = image.shape[:2]
    return encode_header(build_header(message, w, h, job.fps)), jpeg.tobytes()


class PreviewEncoder:
    """One worker thread; :meth:`submit` hands it the latest job, results go to ``endpoint``."""

    def __init__(self, ctx: zmq.Context, endpoint: str, quality: int) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.quality = quality
        self._cond = threading.Condition()
        self._job: Job | None = None
        self._working = False
        self._stop = False
        self.encoded = 0
        self._thread = threading.Thread(target=self._run, name="preview-encoder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A job is waiting or being encoded (a plain read: a stale answer only skips a frame)."""
        return self._job is not None or self._working

    def submit(self, job: Job) -> None:
        """Hand over ``job``; a job still waiting is replaced (latest wins)."""
        with self._cond:
            self._job = job
            self._cond.notify()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _next(self) -> Job | None:
        with self._cond:
            while self._job is None and not self._stop:
                self._cond.wait()
            if self._stop:
                return None
            job, self._job = self._job, None
            self._working = True
            return job

    def _run(self) -> None:
        out = self.ctx.socket(zmq.PUSH)
        out.setsockopt(zmq.LINGER, 0)
        out.setsockopt(zmq.SNDHWM, 4)
        out.connect(self.endpoint)
        try:
            while (job := self._next()) is not None:
                try:
                    header, jpeg = encode_jpeg(job, self.quality)
                    out.send_multipart((header, jpeg), zmq.NOBLOCK)
                    self.encoded += 1
                except zmq.Again:
                    pass  # the publish loop is behind: this preview frame is skipped
                except Exception:
                    log.exception("preview frame %s not encoded", job.message.get("seq"))
                finally:
                    with self._cond:
                        self._working = False
        finally:
            out.close()
