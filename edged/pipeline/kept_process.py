"""A helper process the supervisor keeps running beside the pipeline (the MQTT bridge, the shadow
monitor): a spawned process whose crash never touches the stages, started again after a backoff
when it exits, stopped with SIGTERM (SIGKILL if it does not go)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Callable
from typing import Any

from edged.pipeline.backoff import Backoff, Respawn

log = logging.getLogger(__name__)


class KeptProcess:
    def __init__(self, what: str, name: str, backoff: Backoff, stable_after_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.what = what  # for the log: "MQTT bridge"
        self.name = name  # the process's name: edged-mqtt
        self.ctx = mp.get_context("spawn")
        self.clock = clock
        self.process: Any = None
        self.respawn = Respawn(backoff, stable_after_s)

    def start(self, target: Callable[..., None], *args: Any) -> int:
        """Start ``target(*args)`` in a new process; its pid."""
        self.process = self.ctx.Process(target=target, args=args, name=self.name, daemon=True)
        self.process.start()
        self.respawn.started = self.clock()
        return self.process.pid

    def due(self) -> bool:
        """Every supervisor turn: True once a process that exited is due to start again (the
        owner starts it); the turn that notices the exit logs it and the delay."""
        if self.process is None or self.process.is_alive():
            return False
        now_due, delay = self.respawn.exited(self.clock())
        if delay:
            log.error("the %s exited (code %s); restarting in %.0f s", self.what,
                      self.process.exitcode, delay)  # fmt: skip
        return now_due

    @property
    def started(self) -> bool:
        """Started and not stopped (it may have died since)."""
        return self.process is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.is_alive() else None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM (the helper may say goodbye first), SIGKILL after ``timeout_s``."""
        if self.process is None:
            return
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout_s)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(2.0)
        self.process = None
