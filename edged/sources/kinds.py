"""What kind of source a URI names, decided without opening it (and without OpenCV).

The supervisor decides live vs lossless from the kind, and ``edged config check`` reports it;
neither should pay OpenCV's import (~6 MB, ~0.2 s) for a string test.
"""

from __future__ import annotations

import os
import stat

from edged.config import STREAM_SCHEMES


def source_kind(uri: str) -> str:
    """``synthetic``, ``picamera2``, ``file``, ``stream`` or ``v4l2``."""
    if uri.startswith("synthetic:"):
        return "synthetic"
    if uri.startswith("picamera2:"):
        return "picamera2"
    return classify_uri(uri)


def classify_uri(uri: str) -> str:
    """``file``, ``stream`` or ``v4l2`` for an OpenCV-readable URI."""
    if uri.startswith(STREAM_SCHEMES):
        return "stream"
    if uri.isdigit() or uri.startswith(("/dev/video", "/dev/v4l/")) or _is_char_device(uri):
        return "v4l2"  # /dev/v4l/by-id/… names a USB camera stably across re-plugs and boots
    return "file"


def _is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False
