"""Pi health collector against a fake sysfs tree and a fake `vcgencmd get_throttled`."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edged.pi_health import (
    PiHealthCollector,
    cached,
    parse_throttled,
    read_temperatures,
    vcgencmd_runner,
)


def make_zone(root: Path, index: int, millidegrees: str, kind: str | None) -> None:
    zone = root / "class" / "thermal" / f"thermal_zone{index}"
    zone.mkdir(parents=True)
    (zone / "temp").write_text(millidegrees)
    if kind is not None:
        (zone / "type").write_text(kind + "\n")


def scrape(collector: PiHealthCollector) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} of a real exposition round trip."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_absent_everywhere_means_no_samples_and_no_logs(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    assert scrape(PiHealthCollector(tmp_path, lambda: None)) == {}
    assert caplog.records == []


def test_pi5_temperature_and_throttling(tmp_path: Path) -> None:
    make_zone(tmp_path, 0, "61850\n", "cpu-thermal")
    # Pi 5 under a weak supply: under-voltage now (bit 0), throttled now (bit 2); under-voltage,
    # throttling and soft temperature limit have occurred (bits 16, 18, 19).
    got = scrape(PiHealthCollector(tmp_path, lambda: "throttled=0xd0005\n"))
    assert got["edged_soc_temperature_celsius"] == {(("zone", "cpu-thermal"),): 61.85}
    assert got["edged_throttled"] == {
        (("condition", "under_voltage"),): 1.0,
        (("condition", "arm_frequency_capped"),): 0.0,
        (("condition", "throttled"),): 1.0,
        (("condition", "soft_temp_limit"),): 0.0,
    }
    assert got["edged_throttled_occurred"] == {
        (("condition", "under_voltage"),): 1.0,
        (("condition", "arm_frequency_capped"),): 0.0,
        (("condition", "throttled"),): 1.0,
        (("condition", "soft_temp_limit"),): 1.0,
    }
    assert got["edged_throttled_mask"] == {(): float(0xD0005)}


def test_healthy_pi_reports_zeros_not_absence(tmp_path: Path) -> None:
    got = scrape(PiHealthCollector(tmp_path, lambda: "throttled=0x0\n"))
    assert set(got["edged_throttled"].values()) == {0.0}
    assert set(got["edged_throttled_occurred"].values()) == {0.0}
    assert "edged_soc_temperature_celsius" not in got  # no thermal zone in this fake


def test_temperature_without_vcgencmd(tmp_path: Path) -> None:
    make_zone(tmp_path, 0, "45000", "cpu-thermal")
    got = scrape(PiHealthCollector(tmp_path, lambda: None))
    assert set(got) == {"edged_soc_temperature_celsius"}


def test_unreadable_and_odd_zones(tmp_path: Path) -> None:
    make_zone(tmp_path, 0, "52000", "cpu thermal/\u00b5")  # odd type: sanitised, bounded
    make_zone(tmp_path, 1, "", "sleeping")  # ENODATA-like: empty reading is skipped
    make_zone(tmp_path, 2, "40000", None)  # no type file: the zone's directory name
    make_zone(tmp_path, 3, "-5000", "x" * 100)
    assert read_temperatures(tmp_path) == [
        ("cpu_thermal__", 52.0),
        ("thermal_zone2", 40.0),
        ("x" * 32, -5.0),
    ]


@pytest.mark.parametrize(
    ("text", "mask"),
    [
        ("throttled=0x0\n", 0),
        ("throttled=0x50005", 0x50005),
        ("throttled=0XA", 10),
        ("throttled=0x5G", None),  # not a number: refuse rather than guess
        ("throttled=12", 12),
        ("VCHI initialization failed", None),
        ("", None),
    ],
)
def test_parse_throttled(text: str, mask: int | None) -> None:
    assert parse_throttled(text) == mask


def test_garbage_from_vcgencmd_is_treated_as_absent(tmp_path: Path) -> None:
    assert scrape(PiHealthCollector(tmp_path, lambda: "error=1 error_msg=oops")) == {}


def fake_vcgencmd(tmp_path: Path, body: str) -> str:
    path = tmp_path / "vcgencmd"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_runner_runs_the_tool(tmp_path: Path) -> None:
    exe = fake_vcgencmd(tmp_path, 'test "$1" = get_throttled && echo throttled=0x20000')
    assert vcgencmd_runner(exe)() == "throttled=0x20000\n"


def test_runner_failure_logged_once_and_absent(tmp_path: Path, caplog) -> None:
    exe = fake_vcgencmd(tmp_path, "echo 'VCHI initialization failed' >&2; exit 255")
    run = vcgencmd_runner(exe)
    with caplog.at_level(logging.WARNING, logger="edged.pi_health"):
        assert run() is None
        assert run() is None
    assert len(caplog.records) == 1
    assert "VCHI initialization failed" in caplog.records[0].getMessage()


def test_runner_without_the_tool_never_spawns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", os.devnull)
    run = vcgencmd_runner()
    assert run() is None


def test_runner_timeout_is_absent(tmp_path: Path) -> None:
    exe = fake_vcgencmd(tmp_path, "sleep 5")
    assert vcgencmd_runner(exe, timeout_s=0.2)() is None


def test_registering_does_not_run_vcgencmd(tmp_path: Path) -> None:
    calls: list[int] = []

    def reader() -> str | None:
        calls.append(1)
        return None

    registry = CollectorRegistry(auto_describe=True)
    registry.register(PiHealthCollector(tmp_path, reader))
    assert calls == []
    generate_latest(registry)
    assert calls == [1]


def test_scrapes_in_a_loop_run_vcgencmd_at_most_once_per_cache_period(tmp_path, monkeypatch):
    """Each /metrics request used to fork vcgencmd (issue 19 item 3); a real fake executable
    on PATH counts its runs."""

    bindir = tmp_path / "bin"
    bindir.mkdir()
    runs = tmp_path / "runs"
    tool = bindir / "vcgencmd"
    tool.write_text(f"#!/bin/sh\necho run >> {runs}\necho throttled=0x0\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    now = [100.0]  # the cache's clock: stands still unless the test moves it
    # The supervisor's reader (the real runner, cached), on a clock the test controls.
    collector = PiHealthCollector(tmp_path, cached(vcgencmd_runner(), clock=lambda: now[0]))
    for _ in range(20):
        assert scrape(collector)["edged_throttled_mask"] == {(): 0.0}
    assert len(runs.read_text().splitlines()) == 1
    now[0] += 1.5
    scrape(collector)
    assert len(runs.read_text().splitlines()) == 2


def test_the_cache_reads_again_after_its_period():

    now = [0.0]
    calls = []
    read = cached(lambda: calls.append(1) or "x", ttl_s=1.5, clock=lambda: now[0])
    assert [read(), read()] == ["x", "x"] and len(calls) == 1
    now[0] = 1.6
    assert read() == "x" and len(calls) == 2
