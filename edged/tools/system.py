"""What the machine was doing during a benchmark: governor, clocks, temperature, throttling.

Everything is read from sysfs/procfs when present (roots are parameters so tests can point
them at a fake tree); missing files simply leave fields out.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
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
