"""Which camera's frame the shared inference stage runs next (pure: no sockets, no clock).

Every camera has its own queue. Live mode: latest frame wins *per camera* — a newer frame of a
camera displaces its older one (the caller drops and counts it for that camera), so a queue
never holds more than one frame plus end-of-stream markers. Lossless mode: every frame is kept,
in order per camera (the rings' credits bound the queues). Among the cameras with a frame
waiting, frames are taken round-robin: a camera just served goes to the back, so no camera
starves another, and a slow camera still gets every frame while inference keeps up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar


class Marked(Protocol):
    @property
    def end_of_stream(self) -> bool: ...


class Schedulable(Marked, Protocol):
    @property
    def camera(self) -> str: ...


M = TypeVar("M", bound=Marked)
F = TypeVar("F", bound=Schedulable)


def latest_wins(frames: Iterable[M]) -> tuple[list[M], list[M]]:
    """Live mode's rule for one camera's waiting frames: ``(kept, displaced)``. Of the data
    frames only the newest is kept; every end-of-stream marker is kept. Both lists keep the
    arrival order: a marker ends the stream that came *before* it, so a frame that came after
    it (a restarted capture's) stays after it, or the marker would end the new stream's
    tracks. The caller drops and counts the displaced frames."""
    frames = list(frames)
    newest = max((i for i, f in enumerate(frames) if not f.end_of_stream), default=-1)
    kept = [f for i, f in enumerate(frames) if f.end_of_stream or i == newest]
    displaced = [f for i, f in enumerate(frames) if not f.end_of_stream and i != newest]
    return kept, displaced


class FairScheduler(Generic[F]):
    def __init__(self, lossless: bool) -> None:
        self.lossless = lossless
        self._queues: dict[str, deque[F]] = {}
        self._turns: deque[str] = deque()  # cameras with something waiting, next served first

    def add(self, frame: F) -> list[F]:
        """Queue ``frame``; returns the frames it displaced (live mode: the camera's older
        frame), which the caller drops and counts."""
        queue = self._queues.setdefault(frame.camera, deque())
        if frame.camera not in self._turns:  # nothing of it waiting: it joins the line
            self._turns.append(frame.camera)
        queue.append(frame)
        if self.lossless:
            return []
        kept, displaced = latest_wins(queue)
        if displaced:  # the camera keeps its place in line, with its newest frame
            queue.clear()
            queue.extend(kept)
        return displaced

    def next(self) -> F | None:
        """The next frame to run: the head of the camera whose turn it is; None when idle."""
        while self._turns:
            camera = self._turns.popleft()
            queue = self._queues[camera]
            if not queue:
                continue
            frame = queue.popleft()
            if queue:
                self._turns.append(camera)  # still waiting: back of the line
            return frame
        return None

    def forget(self, camera: str) -> list[F]:
        """A reload removed ``camera``: it leaves the rotation; returns its frames still
        queued, which the caller drops."""
        queue = self._queues.pop(camera, None)
        if camera in self._turns:
            self._turns.remove(camera)
        return list(queue or ())

    def waiting(self, camera: str | None = None) -> int:
        """Frames queued (for ``camera``, or for all)."""
        if camera is not None:
            return len(self._queues.get(camera, ()))
        return sum(len(q) for q in self._queues.values())

    def __len__(self) -> int:
        return self.waiting()
