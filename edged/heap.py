"""Give freed heap memory back to the operating system (glibc only; a no-op elsewhere).

Loading a model allocates far more than serving it needs (ORT's graph optimisation, temporary
copies of weights). glibc keeps freed blocks for reuse rather than returning them, so a
long-running process stays at its loading peak: YOLOv8n's inference stage holds ~10 MB it
will never use again. ``malloc_trim`` returns them; it is called after loads and swaps only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """True when memory was returned to the system."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
