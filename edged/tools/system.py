"""What the machine was doing during a benchmark: governor, clocks, temperature, throttling,
and how much of the measured CPUs other processes took.

Everything is read from sysfs/procfs when present (roots are parameters so tests can point
them at a fake tree); missing files simply leave fields out. :func:`pinned`,
:class:`TimedWindow` and :func:`machine_report` are the measuring frame ``edged bench`` and
``edged bench --batch`` share.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip().rstrip("\x00")
    except OSError:
        return None


def _cpu_model(procfs: Path) -> str:
    text = _read(procfs / "cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def _per_cpu(sysfs: Path, name: str) -> dict[str, str]:
    values = {}
    for cpufreq in sorted((sysfs / "devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        value = _read(cpufreq / name)
        if value is not None:
            values[cpufreq.parent.name] = value
    return values


def _temperatures(sysfs: Path) -> dict[str, float]:
    temps = {}
    for zone in sorted((sysfs / "class/thermal").glob("thermal_zone*")):
        raw = _read(zone / "temp")
        if raw is None or not raw.lstrip("-").isdigit():
            continue
        kind = _read(zone / "type") or zone.name
        temps[f"{zone.name}:{kind}"] = int(raw) / 1000.0
    return temps


def system_state(sysfs: Path = Path("/sys"), procfs: Path = Path("/proc")) -> dict[str, Any]:
    """A snapshot of CPU model, governors, frequencies (kHz), temperatures (°C), Pi flags."""
    board = _read(procfs / "device-tree/model")
    state: dict[str, Any] = {
        "cpu_model": _cpu_model(procfs),
        "logical_cpus": os.cpu_count(),
        "board": board,
        "is_raspberry_pi": bool(board and "Raspberry Pi" in board),
        "governors": _per_cpu(sysfs, "scaling_governor"),
        "frequency_khz": {k: int(v) for k, v in _per_cpu(sysfs, "scaling_cur_freq").items()},
        "max_frequency_khz": {k: int(v) for k, v in _per_cpu(sysfs, "scaling_max_freq").items()},
        "temperature_c": _temperatures(sysfs),
    }
    # Raspberry Pi firmware's under-voltage/throttling bits (same as `vcgencmd get_throttled`).
    throttled = _read(sysfs / "devices/platform/soc/soc:firmware/get_throttled")
    if throttled is not None:
        state["throttled"] = throttled
    load = _read(procfs / "loadavg")
    if load:
        state["load_average"] = [float(x) for x in load.split()[:3]]
    return state


NOISY_OTHER_CPU_PERCENT = 20.0  # other processes took more of a core than this: figures noisy
MIN_LOAD_WINDOW_S = 1.0  # CPU times tick at 10 ms: shorter windows are not judged for other load


def busy_seconds(cpus: Iterable[int] | None = None) -> float:
    """CPU seconds spent not idle so far, on ``cpus`` (default: the whole machine)."""
    import psutil

    if cpus is None:
        times = [psutil.cpu_times()]
    else:
        per_cpu = psutil.cpu_times(percpu=True)
        times = [per_cpu[c] for c in cpus if c < len(per_cpu)]
    return sum(sum(t) - t.idle - getattr(t, "iowait", 0.0) for t in times)


def other_cpu_percent(busy_s: float, own_s: float, wall_s: float) -> float | None:
    """Percent of one CPU that other processes took in a window: the CPUs' busy time minus the
    measured processes' own. None for a window too short to hold a fair number of ticks."""
    if wall_s < MIN_LOAD_WINDOW_S:
        return None
    return round(100 * max(0.0, busy_s - own_s) / wall_s, 1)


def other_load_warning(other_percent: float, where: str) -> str | None:
    """A warning when other processes took a noticeable share of the CPUs measured on."""
    if other_percent <= NOISY_OTHER_CPU_PERCENT:
        return None
    return (f"other processes used {other_percent:.0f}% of a CPU on {where} during the timed "
            "runs: latencies are inflated; rerun on a quiet machine")  # fmt: skip


def state_warnings(state: dict[str, Any]) -> list[str]:
    """Conditions that make benchmark numbers unrepresentative, in words."""
    warnings = []
    governors = set(state.get("governors", {}).values())
    if state.get("is_raspberry_pi") and governors and governors != {"performance"}:
        warnings.append(
            f"CPU governor is {', '.join(sorted(governors))}, not performance: clocks ramp during "
            "the run and latencies vary (echo performance | sudo tee "
            "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)"
        )
    throttled = state.get("throttled")
    if throttled not in (None, "0", "0x0"):
        warnings.append(f"the Pi firmware reports throttling/under-voltage (flags {throttled})")
    return warnings


@contextmanager
def pinned(cpus: Sequence[int]) -> Iterator[None]:
    """This process on ``cpus`` for the block, then back where it was. Enter it before creating
    a runtime's thread pool: threads created inside inherit the mask."""
    if not hasattr(os, "sched_setaffinity"):  # pragma: no cover - macOS/Windows
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


class TimedWindow:
    """Wall time, this process's CPU time and the ``cpus``' busy time over a block: what the
    measured work used, and what other processes took from the same CPUs meanwhile."""

    def __init__(self, cpus: Sequence[int] | None) -> None:
        self.cpus = cpus
        self.wall_s = 0.0
        self.own_s = 0.0
        self.other_percent: float | None = None

    def __enter__(self) -> TimedWindow:
        import psutil

        self._process = psutil.Process()
        self._busy0 = busy_seconds(self.cpus)
        self._cpu0, self._wall0 = self._process.cpu_times(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall0
        cpu1 = self._process.cpu_times()
        busy_s = busy_seconds(self.cpus) - self._busy0
        self.own_s = (cpu1.user - self._cpu0.user) + (cpu1.system - self._cpu0.system)
        self.other_percent = other_cpu_percent(busy_s, self.own_s, self.wall_s)

    @property
    def cpu_percent(self) -> float:
        """This process's CPU use over the window, in percent of one CPU."""
        return round(100 * self.own_s / self.wall_s, 1) if self.wall_s > 0 else 0.0


def machine_report(before: dict[str, Any], window: TimedWindow,
                   where: str) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """The machine's state after ``window`` (with the other load on ``where``, e.g. "the pinned
    CPUs 0,1") and every warning about the machine from ``before`` and after, in words."""
    after = {**system_state(), "other_cpu_percent": window.other_percent}
    other = window.other_percent
    noisy = other_load_warning(other, where) if other is not None else None
    warnings = state_warnings(before) + state_warnings(after) + ([noisy] if noisy else [])
    return after, sorted(set(warnings))
