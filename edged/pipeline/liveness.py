"""Which stage processes have gone quiet: what the systemd watchdog pings vouch for.

Every stage reports its counters every ``pipeline.stats_interval_s`` whether frames flow or
not, so a process whose reports stop has its loop stuck (a hung driver call, a deadlock). A
source that is down, a model loading again or a file that ended is not a hang: the process
keeps reporting, ``/readyz`` says what is wrong, and the watchdog leaves the daemon running.
A process just (re)started is given time to load its model before it must report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Liveness:
    silence_s: float  # a running process that reported nothing for this long is stuck
    start_grace_s: float  # time a new process has to report the first time
    heard_at: dict[str, float] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)

    def started(self, process: str, now: float) -> None:
        self.started_at[process] = now
        self.heard_at.pop(process, None)

    def heard(self, process: str, now: float) -> None:
        self.heard_at[process] = now

    def stuck(self, running: Iterable[str], now: float) -> list[str]:
        """The running processes that should have reported by now and have not."""
        quiet = []
        for process in running:
            heard = self.heard_at.get(process)
            if heard is not None and now - heard <= self.silence_s:
                continue
            if heard is None and now - self.started_at.get(process, now) <= self.start_grace_s:
                continue
            quiet.append(process)
        return quiet
