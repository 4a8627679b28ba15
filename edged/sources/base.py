"""The frame-source contract shared by every capture backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# How long opening a stream may take (FFmpeg's connect/probe timeout). Capture gives a blocked
# open this long, plus a grace, before it counts the attempt as failed; a dead camera is then
# retried with backoff.
OPEN_TIMEOUT_S = 10.0


class SourceError(RuntimeError):
    """A source could not be opened or stopped delivering frames; the capture stage retries."""


@dataclass(frozen=True)
class SourceInfo:
    """What a source reports once open: frame size, nominal rate, and whether it is live."""

    kind: str  # "file", "stream", "v4l2", "picamera2", "synthetic"
    uri: str  # as shown to people: credentials redacted (edged.redact)
    width: int
    height: int
    fps: float
    live: bool  # cameras and network streams are live; files and the test pattern are not
    frame_count: int | None = None  # files only, as the container claims (may be wrong)


class SourceUnusable(SourceError):
    """A source waiting will not fix: a video file that is missing or that cannot be opened."""


@runtime_checkable
class FrameSource(Protocol):
    """Delivers BGR ``H×W×3`` uint8 frames; ``read`` returns ``None`` at the end of a file."""

    info: SourceInfo

    def read(self) -> np.ndarray | None:
        """The next frame; raises :class:`SourceError` when the device or stream fails."""
        ...

    def close(self) -> None: ...
