"""System state from sysfs/procfs, against fake trees: the Pi governor warning and friends."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.tools.system import state_warnings, system_state


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _pi(root: Path, governor: str, throttled: str = "0x0") -> tuple[Path, Path]:
    sysfs, procfs = root / "sys", root / "proc"
    _write(procfs / "device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    _write(procfs / "cpuinfo", "processor\t: 0\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
    _write(procfs / "loadavg", "0.50 0.40 0.30 1/200 1234\n")
    for cpu in range(4):
        freq = sysfs / f"devices/system/cpu/cpu{cpu}/cpufreq"
        _write(freq / "scaling_governor", f"{governor}\n")
        _write(freq / "scaling_cur_freq", "2400000\n")
        _write(freq / "scaling_max_freq", "2400000\n")
    _write(sysfs / "class/thermal/thermal_zone0/temp", "51234\n")
    _write(sysfs / "class/thermal/thermal_zone0/type", "cpu-thermal\n")
    _write(sysfs / "devices/platform/soc/soc:firmware/get_throttled", f"{throttled}\n")
    return sysfs, procfs


def test_pi_state_is_read(tmp_path: Path) -> None:
    state = system_state(*_pi(tmp_path, "performance"))
    assert state["is_raspberry_pi"] is True
    assert state["cpu_model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert state["governors"] == {f"cpu{i}": "performance" for i in range(4)}
    assert state["frequency_khz"]["cpu3"] == 2400000
    assert state["temperature_c"] == {"thermal_zone0:cpu-thermal": 51.234}
    assert state["load_average"] == [0.5, 0.4, 0.3]
    assert state_warnings(state) == []


def test_pi_warns_when_governor_is_not_performance(tmp_path: Path) -> None:
    warnings = state_warnings(system_state(*_pi(tmp_path, "ondemand")))
    assert len(warnings) == 1 and "ondemand, not performance" in warnings[0]


def test_pi_warns_on_throttling(tmp_path: Path) -> None:
    warnings = state_warnings(system_state(*_pi(tmp_path, "performance", "0x50005")))
    assert any("0x50005" in w for w in warnings)


def test_non_pi_and_missing_files_are_quiet(tmp_path: Path) -> None:
    sysfs, procfs = tmp_path / "sys", tmp_path / "proc"
    _write(sysfs / "devices/system/cpu/cpu0/cpufreq/scaling_governor", "powersave\n")
    state = system_state(sysfs, procfs)
    assert state["is_raspberry_pi"] is False
    assert state["temperature_c"] == {} and "throttled" not in state
    assert state_warnings(state) == []  # only a Pi's governor is judged


def test_pinned_restores_the_affinity_even_when_the_block_raises():
    import os

    from edged.tools.system import pinned

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    before = os.sched_getaffinity(0)
    one = min(before)
    with pytest.raises(RuntimeError), pinned([one]):
        assert os.sched_getaffinity(0) == {one}
        raise RuntimeError("the measurement failed")
    assert os.sched_getaffinity(0) == before


def test_a_timed_window_counts_this_process_s_own_cpu_time():
    """A busy loop of ~1.2 CPU-seconds shows in the window's own time (ticks are 10 ms); the
    other-load figure is judged once the window holds a second (None for a shorter one)."""
    import time

    from edged.tools.system import MIN_LOAD_WINDOW_S, TimedWindow

    with TimedWindow(None) as window:
        start = time.process_time()
        while time.process_time() - start < MIN_LOAD_WINDOW_S + 0.2:
            pass
    assert window.own_s >= MIN_LOAD_WINDOW_S
    assert window.other_percent is not None and window.other_percent >= 0
    assert window.cpu_percent > 0
    with TimedWindow(None) as short:
        pass
    assert short.other_percent is None
