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
from edged.pipeline.layout import (
    ProcessGroup,
    instance_name,
    per_camera,
    process_groups,
    process_name,
)
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
    """The processes of a layout's groups, by process name (``capture+preprocess``): the shared
    groups once, the per-camera groups once per camera (``capture+preprocess[cam1]``, see
    :meth:`add_camera`). Stages are named by instance (``capture[cam1]``, ``infer``)."""

    def __init__(self, layout: str, pipeline: PipelineConfig) -> None:
        self._layout = process_groups(layout)
        self.groups: dict[str, ProcessGroup] = {}
        self._process_of: dict[str, str] = {}  # stage instance -> process name
        self.camera_of: dict[str, str] = {}  # process name -> camera id (per-camera groups)
        self.tag_of: dict[str, str] = {}  # process name -> its instances' name suffix
        for group in self._layout:
            if not per_camera(group):
                self._add(group, "", "")
        self.by_name: dict[str, Any] = {}  # multiprocessing processes
        self.restarts: dict[str, RestartPolicy] = {}
        self._pipeline = pipeline
        self._mp = mp.get_context("spawn")  # no forked thread pools, no inherited sockets

    def _add(self, group: ProcessGroup, camera: str, tag: str) -> None:
        name = process_name(group, tag)
        self.groups[name] = group
        self.camera_of[name] = camera
        self.tag_of[name] = tag
        for stage in group:
            self._process_of[instance_name(stage, tag)] = name

    def add_camera(self, camera: str, tag: str) -> list[str]:
        """The per-camera processes of ``camera`` (instances suffixed ``tag``), in pipeline
        order; not started yet."""
        for group in self._layout:
            if per_camera(group):
                self._add(group, camera, tag)
        return [n for n, cam in self.camera_of.items() if cam == camera and self.tag_of[n] == tag]

    def remove_camera(self, camera: str) -> list[str]:
        """Forget ``camera``'s processes (stopped by the caller); their names."""
        names = [n for n, cam in self.camera_of.items() if cam == camera and per_camera(
            self.groups[n])]  # fmt: skip
        for name in names:
            for stage in self.groups.pop(name):
                del self._process_of[instance_name(stage, self.tag_of[name])]
            del self.camera_of[name], self.tag_of[name]
            self.by_name.pop(name, None)
            self.restarts.pop(name, None)
        return names

    def instances(self) -> list[str]:
        """Every stage instance (supervisor identity) known now."""
        return list(self._process_of)

    def __contains__(self, instance: object) -> bool:  # a stage identity of ours?
        return instance in self._process_of

    def process_of(self, stage: str) -> str:
        """The process hosting the stage instance ``stage`` (``capture[cam1]``, ``infer``)."""
        return self._process_of[stage]

    def knows(self, stage: str) -> bool:
        return stage in self._process_of

    def started(self, stage: str) -> bool:
        """Was the process hosting ``stage`` started (alone or with a neighbour)?"""
        return self.process_of(stage) in self.by_name

    def spawn(self, setups: list[StageSetup]) -> str:
        """Start the process running ``setups`` (one group's stages); its name."""
        name = process_name(setups[0].process_group, setups[0].tag)
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
        """Per stage instance: its process (shared with its neighbours in the fused layout)."""
        status = {}
        by_order = sorted(self._process_of.items(), key=lambda i: STAGE_ORDER.index(
            i[0].partition("[")[0]))  # fmt: skip
        for stage, name in by_order:
            proc = self.by_name.get(name)
            if proc is not None:
                status[stage] = {"pid": proc.pid, "alive": proc.is_alive(), "process": name}
                if self.camera_of[name]:
                    status[stage]["camera"] = self.camera_of[name]
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

    def stop(self, timeout_s: float = 5.0, names: list[str] | None = None) -> None:
        """Wait for the processes (``names``, or all) to exit (they were told to stop); kill
        what does not."""
        deadline = time.monotonic() + timeout_s
        for name, proc in self.by_name.items():
            if names is not None and name not in names:
                continue
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("%s stage did not stop; killing it", name)
                proc.kill()
                proc.join(2.0)
