"""Frames whose inference has started and not yet been published, oldest first.

A backend that runs several frames at once (:class:`edged.backends.InFlightBackend`) finishes
them on its own threads; each finish writes a byte to a pipe whose read end sits in the stage's
poller, so the stage loop wakes for a finished frame as it wakes for a new one (no polling of
the requests, no thread of ours).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from edged.backends import Backend
from edged.pipeline.messages import ArrayRef, Frame, ModelDescriptor


@dataclass
class Running:
    """One frame in flight: what it will be published with, and what the backend holds."""

    frame: Frame
    slot: int  # its output slot
    model: ModelDescriptor
    backend: Backend
    refs: tuple[ArrayRef, ...]
    started: float
    # Kept alive while the backend reads and writes them (shared-memory views, or a one-off
    # tensor made for a frame letterboxed for the previous model).
    buffers: list[np.ndarray] = field(default_factory=list)
    handle: object = None  # the backend's, for ``wait``; None: run synchronously, done
    finished: float | None = None  # monotonic time it finished (set on the backend's thread)


class InFlight:
    """The frames in flight, in submission order, and the wake-up pipe their finishes write."""

    def __init__(self) -> None:
        self._queue: deque[Running] = deque()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        # A backend may finish a frame (on its thread) after close(): its wake-up must not go
        # to a closed fd, nor to a new file that reused the number.
        self._lock = threading.Lock()
        self._closed = False

    def fileno(self) -> int:
        """Readable when a frame has finished since the last :meth:`clear_wakeups`."""
        return self._read

    def add(self, running: Running) -> None:
        self._queue.append(running)

    def on_done(self, running: Running) -> Callable[[], None]:
        """What the backend calls (on its thread) when ``running`` has finished."""

        def done() -> None:
            running.finished = time.monotonic()
            with self._lock:
                if self._closed:
                    return
                # A full pipe (BlockingIOError) holds wake-ups already: the loop is awake.
                with contextlib.suppress(OSError):
                    os.write(self._write, b"\0")

        return done

    def clear_wakeups(self) -> None:
        """Before looking at the heads: a finish after this wakes the loop again."""
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def head_finished(self) -> bool:
        return bool(self._queue) and self._queue[0].finished is not None

    def pop(self) -> Running:
        return self._queue.popleft()

    def take(self, cameras: set[str]) -> list[Running]:
        """Remove (and return, oldest first) the frames in flight of ``cameras``."""
        taken = [r for r in self._queue if r.frame.camera in cameras]
        self._queue = deque(r for r in self._queue if r.frame.camera not in cameras)
        return taken

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Running]:
        return iter(self._queue)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._read)
            os.close(self._write)
