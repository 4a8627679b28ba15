"""The stage processes: start them, tell which run, restart the dead ones with backoff (giving up
past the restart limit), stop them at the end. Processes only: what a stage does is not here."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from edged.config import PipelineConfig
from edged.pipeline import stage_main
from edged.pipeline.backoff import Backoff
from edged.pipeline.layout import process_groups, process_name
from edged.pipeline.stage_names import STAGE_ORDER
from edged.pipeline.stage_runtime import StageSetup

log = logging.getLogger("edged.pipeline.supervisor")  # the supervisor's lines, as before

RESTART_BACKOFF = Backoff(initial_s=0.25, max_s=10.0)  # by restarts within the window


def exit_cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class RestartPolicy:
    """Exponential backoff between restarts of one stage, and a limit per time window."""

    def __init__(self, cfg: PipelineConfig) -> None:
        self.limit = cfg.restart_limit
        self.window = cfg.restart_window_s
        self.history: list[float] = []
        self.due: float | None = None

    def count_in_window(self, now: float) -> int:
        return sum(1 for t in self.history if now - t <= self.window)

    def allow(self, now: float) -> bool:
        return self.count_in_window(now) < self.limit

    def schedule(self, now: float) -> float:
        delay = RESTART_BACKOFF.delay(self.count_in_window(now) + 1)
        self.history.append(now)
        self.due = now + delay
        return delay


@dataclass
class Deaths:
    """What one look at the processes found."""

    died: list[str] = field(default_factory=list)  # found dead now; restart scheduled
    due: list[str] = field(default_factory=list)  # restart delay over: respawn these now
    gave_up: bool = False  # one died too often within the window: edged must stop


class StageProcesses:
    """The processes of a layout's groups, by process name (``capture+preprocess``)."""

    def __init__(self, layout: str, pipeline: PipelineConfig) -> None:
        self.groups = {process_name(g): g for g in process_groups(layout)}
        self._process_of = {stage: name for name, g in self.groups.items() for stage in g}
        self.by_name: dict[str, Any] = {}  # multiprocessing processes
        self.restarts: dict[str, RestartPolicy] = {}
        self._pipeline = pipeline
        self._mp = mp.get_context("spawn")  # no forked thread pools, no inherited sockets

    def process_of(self, stage: str) -> str:
        return self._process_of[stage]

    def knows(self, stage: str) -> bool:
        return stage in self._process_of

    def started(self, stage: str) -> bool:
        """Was the process hosting ``stage`` started (alone or with a neighbour)?"""
        return self.process_of(stage) in self.by_name

    def spawn(self, setups: list[StageSetup]) -> str:
        """Start the process running ``setups`` (one group's stages); its name."""
        name = process_name(setups[0].process_group)
        proc = self._mp.Process(target=stage_main.main, args=(setups,), name=f"edged-{name}")
        proc.start()
        self.by_name[name] = proc
        log.info("started %s stage (pid %d)", name, proc.pid)
        return name

    def is_running(self, stage: str) -> bool:
        proc = self.by_name.get(self.process_of(stage))
        return proc is not None and proc.is_alive()

    def exitcode(self, stage: str) -> int | None:
        return self.by_name[self.process_of(stage)].exitcode

    def running(self) -> list[str]:
        return [name for name, proc in self.by_name.items() if proc.is_alive()]

    def table(self) -> list[tuple[str, int]]:
        """(name, pid) of the supervisor and every live stage process, for the metrics."""
        table = [("supervisor", os.getpid())]
        table += [(name, p.pid) for name, p in self.by_name.items() if p.pid and p.is_alive()]
        return table

    def health(self) -> tuple[bool, str]:
        dead = [name for name, p in self.by_name.items() if not p.is_alive()]
        if dead:
            return False, f"stage(s) not running: {', '.join(dead)}"
        return True, f"supervisor and {len(self.by_name)} stage processes running"

    def stage_status(self) -> dict[str, dict[str, Any]]:
        """Per stage: its process (shared with its neighbours in the fused layout)."""
        status = {}
        for stage in STAGE_ORDER:
            name = self.process_of(stage)
            proc = self.by_name.get(name)
            if proc is not None:
                status[stage] = {"pid": proc.pid, "alive": proc.is_alive(), "process": name}
        return status

    def check(self, now: float) -> Deaths:
        """Schedule a restart for each process found dead; say which are due for it."""
        deaths = Deaths()
        for name, proc in list(self.by_name.items()):
            if proc.is_alive():
                continue
            restart = self.restarts.setdefault(name, RestartPolicy(self._pipeline))
            if restart.due is None:
                cause = exit_cause(proc.exitcode)
                if not restart.allow(now):
                    log.error("%s stage died (%s) %d times within %.0fs; giving up", name, cause,
                              restart.count_in_window(now),
                              self._pipeline.restart_window_s)  # fmt: skip
                    deaths.gave_up = True
                    return deaths
                delay = restart.schedule(now)
                log.error("%s stage died (%s); restarting in %.1fs", name, cause, delay)
                deaths.died.append(name)
            elif now >= restart.due:
                restart.due = None
                proc.join(0)
                deaths.due.append(name)
        return deaths

    def stop(self, timeout_s: float = 5.0) -> None:
        """Wait for the processes to exit (they were told to stop); kill what does not."""
        deadline = time.monotonic() + timeout_s
        for name, proc in self.by_name.items():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("%s stage did not stop; killing it", name)
                proc.kill()
                proc.join(2.0)
