"""Frame sources: files/streams/V4L2 via OpenCV, picamera2, and a synthetic test pattern."""

from __future__ import annotations

from edged.config import SourceConfig
from edged.sources.base import (
    OPEN_TIMEOUT_S,
    FrameSource,
    SourceError,
    SourceInfo,
    SourceUnusable,
)
from edged.sources.kinds import source_kind

READ_TIMEOUT_MARGIN_S = 1.0  # < capture's HANG_GRACE_S (5 s): see open_source

__all__ = [
    "OPEN_TIMEOUT_S",
    "FrameSource",
    "SourceError",
    "SourceInfo",
    "SourceUnusable",
    "open_source",
    "source_kind",
]


def open_source(config: SourceConfig) -> FrameSource:
    """Open the configured source; raises :class:`SourceError` with a reason when it cannot."""
    kind = source_kind(config.uri)
    if kind == "synthetic":
        from edged.sources.synthetic import SyntheticSource

        return SyntheticSource(config.width or 1280, config.height or 720, config.fps or 15.0)
    if kind == "picamera2":
        from edged.sources.picamera2 import Picamera2Source

        index = config.uri.partition(":")[2] or "0"
        if not index.isdigit():
            raise SourceError(f"picamera2 camera index must be a number, got {index!r}")
        # Its frame wait is capture's stall limit, as OpenCV's read timeout is: a stall is then
        # the source's clean error, not a call capture has to abandon as hung.
        return Picamera2Source(int(index), config.width, config.height, config.fps,
                               frame_timeout_s=config.reconnect.stall_timeout_s)  # fmt: skip
    from edged.sources.opencv import OpenCVSource

    # FFmpeg's read gives up a little after capture's stall limit: a frozen stream is then always
    # reported as stalled by capture (two equal limits raced, and the log said "stopped
    # delivering" or "stalled" by chance), and the read still returns by itself well within
    # capture's grace for a blocked call, so it is never abandoned.
    read_timeout_s = config.reconnect.stall_timeout_s + READ_TIMEOUT_MARGIN_S
    return OpenCVSource(
        config.uri, config.width, config.height, config.fps,
        open_timeout_s=OPEN_TIMEOUT_S, read_timeout_s=read_timeout_s,
        decode_threads=config.decode_threads,
    )  # fmt: skip
