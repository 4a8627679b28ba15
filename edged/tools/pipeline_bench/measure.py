"""What a contender is measured with: CPU time and PSS of its whole process tree, sampled
during its timed window; percentile summaries; a log's tail for a failed run."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edged.tools.pipeline_bench.settings import MB
from edged.tools.system import busy_seconds, other_cpu_percent


def process_tree(root: Any) -> list[Any]:
    import psutil

    procs = [root]
    with contextlib.suppress(psutil.Error):
        procs += root.children(recursive=True)
    return procs


def tree_cpu_by_process(root: Any) -> dict[int, tuple[str, float]]:
    """pid → (name, user + system CPU seconds) for ``root`` and every live descendant."""
    import psutil

    found = {}
    for p in process_tree(root):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            found[p.pid] = (process_label(p), t.user + t.system)
    return found


def process_label(p: Any) -> str:
    """``edged: infer`` → ``infer``; the supervisor and helpers by their role."""
    import psutil

    try:
        cmdline = p.cmdline()
    except psutil.Error:
        return "?"
    text = " ".join(cmdline)
    if text.startswith("edged: "):
        return text[len("edged: ") :].strip()
    if "edged.cli" in text:
        return "supervisor"
    if "resource_tracker" in text:
        return "resource_tracker"
    return p.name()


def tree_pss_by_process(root: Any) -> dict[str, int]:
    """PSS bytes of ``root`` and each descendant, by role (``infer``, ``supervisor``, ...)."""
    import psutil

    found: dict[str, int] = {}
    for p in process_tree(root):
        try:
            pss = p.memory_full_info().pss
        except psutil.Error:
            continue
        label = process_label(p)
        while label in found:  # two of a kind (e.g. an Ultralytics helper): keep both
            label += "'"
        found[label] = pss
    return found


class PssSampler:
    """Samples the summed PSS of a process tree on a thread: ``(monotonic, bytes, count)``."""

    def __init__(self, pid: int, interval_s: float = 1.0) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval_s
        self.samples: list[tuple[float, int, int]] = []
        self.by_process: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)

    def start(self) -> PssSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        by_process = tree_pss_by_process(self.root)
        if by_process:
            now = time.monotonic()
            self.samples.append((now, sum(by_process.values()), len(by_process)))
            self.by_process.append((now, by_process))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def in_window(self, start: float, end: float) -> dict[str, Any]:
        """Largest and mean PSS sampled between ``start`` and ``end`` (all samples if none)."""
        inside = [s for s in self.samples if start <= s[0] <= end] or self.samples
        if not inside:
            return {"pss_mb": None, "pss_mb_mean": None, "processes": None, "pss_samples": 0}
        peak = max(inside, key=lambda s: s[1])
        breakdown = next((b for t, b in self.by_process if t == peak[0]), {})
        return {
            "pss_mb": round(peak[1] / MB, 1),
            "pss_mb_mean": round(sum(s[1] for s in inside) / len(inside) / MB, 1),
            "pss_mb_by_process": {k: round(v / MB, 1) for k, v in sorted(breakdown.items())},
            "processes": max(s[2] for s in inside),
            "pss_samples": len(inside),
        }


class CpuWindow:
    """CPU of a process tree and of the whole machine between :meth:`begin` and :meth:`end`."""

    def __init__(self, root: Any, per_process: bool = False) -> None:
        self.root = root
        self.per_process = per_process
        self._by0: dict[int, tuple[str, float]] = {}
        self._by1: dict[int, tuple[str, float]] = {}
        self.start = self.stop = 0.0
        self._cpu0 = self._cpu1 = self._busy0 = self._busy1 = 0.0
        self._load0: tuple[float, ...] = ()
        self._load1: tuple[float, ...] = ()

    def begin(self) -> None:
        self._by0 = tree_cpu_by_process(self.root)
        self._cpu0 = sum(cpu for _name, cpu in self._by0.values())
        self._busy0 = busy_seconds()
        self._load0 = os.getloadavg()
        self.start = time.monotonic()

    def end(self) -> None:
        self.stop = time.monotonic()
        self._by1 = tree_cpu_by_process(self.root)
        self._cpu1 = sum(cpu for _name, cpu in self._by1.values())
        self._busy1 = busy_seconds()
        self._load1 = os.getloadavg()

    def result(self) -> dict[str, Any]:
        # The window is judged as recorded (rounded), so the record agrees with itself.
        wall = max(round(self.stop - self.start, 3), 1e-9)
        own = self._cpu1 - self._cpu0
        return {
            "window_start": self.start,
            "window_end": self.stop,
            "window_s": wall,
            "cpu_percent": round(100 * own / wall, 1),
            "other_cpu_percent": other_cpu_percent(self._busy1 - self._busy0, own, wall),
            "load_before": [round(x, 2) for x in self._load0],
            "load_after": [round(x, 2) for x in self._load1],
            **({"cpu_percent_by_process": self.by_process(wall)} if self.per_process else {}),
        }

    def by_process(self, wall: float) -> dict[str, float]:
        """CPU% of each process that lived through the window, by its role."""
        shares: dict[str, float] = {}
        for pid, (name, cpu1) in self._by1.items():
            if pid in self._by0:
                shares[name] = shares.get(name, 0.0) + 100 * (cpu1 - self._by0[pid][1]) / wall
        return {k: round(v, 1) for k, v in sorted(shares.items())}


def percentile_summary(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99, mean and max in ms (None for no values: a contender that timed nothing)."""
    import numpy as np

    if len(values) == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, (50, 90, 99))
    return {
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(a.mean()), 3),
        "max": round(float(a.max()), 3),
    }


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
