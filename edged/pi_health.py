"""Raspberry Pi health for ``/metrics``: SoC temperature and firmware throttling flags.

Read at scrape time by a prometheus ``Collector`` (no background thread; ``vcgencmd`` runs at
most once per 1.5 s however often /metrics is scraped), from two places that exist on a Pi and
usually nowhere else:

- ``/sys/class/thermal/thermal_zone*/temp`` (millidegrees Celsius; on a Pi 5 ``thermal_zone0``
  is ``cpu-thermal``, the SoC), exported as ``edged_soc_temperature_celsius{zone=<type>}``;
- ``vcgencmd get_throttled`` (``throttled=0x50005``), decoded into one 0/1 gauge per condition
  for "active now" (``edged_throttled``) and "has occurred since boot"
  (``edged_throttled_occurred``), plus the raw bit mask.

Where neither exists (a laptop without thermal zones, a CI container) the collector yields no
samples at all and logs nothing: Grafana's temperature panel shows "No data" rather than a
misleading 0. A failing ``vcgencmd`` (not in the ``video`` group, firmware busy) is logged once
and then treated as absent, so a broken tool never breaks a scrape.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Bit → condition name, from the Raspberry Pi firmware documentation of `vcgencmd get_throttled`.
# The "occurred" bits are the same conditions shifted by 16 and stay set until reboot.
THROTTLE_CONDITIONS: tuple[tuple[int, str], ...] = (
    (0, "under_voltage"),
    (1, "arm_frequency_capped"),
    (2, "throttled"),
    (3, "soft_temp_limit"),
)
OCCURRED_SHIFT = 16

# Zone types become label values; keep them short and tame even if a driver reports oddities.
_ZONE_TYPE = re.compile(r"[^A-Za-z0-9_.-]")
_THROTTLED = re.compile(r"throttled=(0x[0-9a-f]+|\d+)\b", re.IGNORECASE)

# Returns the stdout of `vcgencmd get_throttled`, or None when the tool is absent or failed.
ThrottleReader = Callable[[], str | None]


def vcgencmd_runner(executable: str | None = None, timeout_s: float = 2.0) -> ThrottleReader:
    """A reader that runs ``vcgencmd get_throttled``; None from it means "not a Pi".

    The executable is looked up once: the common case (no vcgencmd) then costs nothing per
    scrape. A failure is logged once; later failures stay quiet (they would repeat every scrape).
    """
    path = executable or shutil.which("vcgencmd")
    warned = False

    def run() -> str | None:
        nonlocal warned
        if path is None:
            return None
        try:
            done = subprocess.run(
                [path, "get_throttled"],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = str(exc)
        else:
            if done.returncode == 0:
                return done.stdout
            reason = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        if not warned:
            warned = True
            log.warning("vcgencmd get_throttled failed (%s); throttling metrics disabled until "
                        "it works", reason)  # fmt: skip
        return None

    return run


def cached(reader: ThrottleReader, ttl_s: float = 1.5,
           clock: Callable[[], float] = time.monotonic) -> ThrottleReader:  # fmt: skip
    """``reader`` run at most once per ``ttl_s``; concurrent scrapes share one run.

    Each run forks ``vcgencmd``: without this, every request to /metrics did, so a client
    scraping in a loop could keep the Pi busy forking (and the firmware mailbox busy)."""
    lock = threading.Lock()
    last: tuple[float, str | None] | None = None

    def read() -> str | None:
        nonlocal last
        with lock:
            now = clock()
            if last is None or now - last[0] >= ttl_s:
                last = (now, reader())
            return last[1]

    return read


def parse_throttled(text: str) -> int | None:
    """The bit mask from ``vcgencmd get_throttled`` output; None when it is not recognisable."""
    match = _THROTTLED.search(text)
    if match is None:
        return None
    return int(match.group(1), 0)


def read_temperatures(sysfs_root: Path) -> list[tuple[str, float]]:
    """(zone type, °C) for every readable thermal zone under ``sysfs_root``; [] when none.

    Zones whose ``temp`` cannot be read (some report ENODATA while a sensor sleeps) are skipped
    for this scrape rather than exported as a bogus value.
    """
    zones: list[tuple[str, float]] = []
    base = sysfs_root / "class" / "thermal"
    for zone in sorted(base.glob("thermal_zone*")):
        try:
            millidegrees = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            kind = (zone / "type").read_text().strip()
        except OSError:
            kind = ""
        name = _ZONE_TYPE.sub("_", kind)[:32] or zone.name
        zones.append((name, millidegrees / 1000.0))
    return zones


class PiHealthCollector(Collector):
    """SoC temperature and throttling flags, read at scrape time; absent where unsupported.

    Args:
        sysfs_root: where ``class/thermal`` lives (``/sys``; a temp dir in tests).
        throttle_reader: returns ``vcgencmd get_throttled`` output or None (see
            :func:`vcgencmd_runner`, the default).
    """

    def __init__(
        self,
        sysfs_root: Path | str = "/sys",
        throttle_reader: ThrottleReader | None = None,
    ) -> None:
        self._sysfs_root = Path(sysfs_root)
        self._read_throttled = throttle_reader or cached(vcgencmd_runner())

    def describe(self) -> list[Metric]:
        # A registry with auto_describe (prometheus_client's global REGISTRY) would otherwise
        # call collect() at registration and run vcgencmd; describing nothing skips that.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        zones = read_temperatures(self._sysfs_root)
        if zones:
            temperature = GaugeMetricFamily(
                "edged_soc_temperature_celsius",
                "SoC temperature from each kernel thermal zone (Pi 5: zone cpu-thermal).",
                labels=["zone"],
            )
            for name, celsius in zones:
                temperature.add_metric([name], celsius)
            yield temperature

        output = self._read_throttled()
        mask = parse_throttled(output) if output is not None else None
        if mask is None:
            return
        now = GaugeMetricFamily(
            "edged_throttled",
            "1 while the firmware reports the condition (vcgencmd get_throttled, low bits).",
            labels=["condition"],
        )
        occurred = GaugeMetricFamily(
            "edged_throttled_occurred",
            "1 if the condition has occurred since boot (vcgencmd get_throttled, high bits).",
            labels=["condition"],
        )
        for bit, condition in THROTTLE_CONDITIONS:
            now.add_metric([condition], float(mask >> bit & 1))
            occurred.add_metric([condition], float(mask >> (bit + OCCURRED_SHIFT) & 1))
        yield now
        yield occurred
        yield GaugeMetricFamily(
            "edged_throttled_mask",
            "Raw bit mask from vcgencmd get_throttled (0 = never throttled since boot).",
            value=float(mask),
        )
