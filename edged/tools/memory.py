"""Peak resident memory of a block of work in this process (Linux-exact, sampled elsewhere)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import psutil

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _vm_hwm_bytes() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Linux resets the peak-RSS counter (VmHWM) when "5" is written to clear_refs."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Context manager: ``peak_rss_bytes`` and ``baseline_rss_bytes`` of the enclosed work.

    On Linux the kernel's own high-water mark is reset on entry and read on exit, so short
    spikes are never missed. A sampling thread (every ``interval`` s) covers other systems.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.baseline_rss_bytes = 0
        self.peak_rss_bytes = 0
        self.exact = False
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss_bytes = max(self.peak_rss_bytes, self._process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self.baseline_rss_bytes = self._process.memory_info().rss
        self.peak_rss_bytes = self.baseline_rss_bytes
        self.exact = _reset_hwm()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = self._process.memory_info().rss
        hwm = _vm_hwm_bytes() if self.exact else None
        self.peak_rss_bytes = max(self.peak_rss_bytes, current, hwm or 0)
