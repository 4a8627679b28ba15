"""The supervisor's side of the shadow monitor: spawn the helper and restart it with backoff,
read its reports into metrics, WARNING when the agreement falls below the floor, a STATUS note
while it stays there."""

from __future__ import annotations

import contextlib
import logging
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import zmq
from prometheus_client import CollectorRegistry

from edged.config import EdgedConfig
from edged.monitor.helper import HelperSetup
from edged.monitor.judge import ShadowJudge, Update
from edged.monitor.messages import ShadowReport, report_endpoint, sample_endpoint
from edged.monitor.metrics import ShadowMetrics
from edged.monitor.reference import resolve_reference
from edged.pipeline.backoff import Backoff
from edged.pipeline.kept_process import KeptProcess

log = logging.getLogger(__name__)

RESTART_BACKOFF = Backoff(initial_s=1.0, max_s=60.0)
STABLE_AFTER_S = 60.0  # a helper that ran this long starts the backoff over when it dies
MAX_REPORTS_PER_TURN = 100  # the supervisor's loop has other work: the rest waits a turn


def camera_thresholds(config: EdgedConfig) -> dict[str, float | None]:
    """What the helper takes from each camera's section (it decodes with its threshold; a
    removed camera's entry is never used)."""
    return {c.id: c.conf_threshold for c in config.camera_list()}


class ShadowMonitor:
    def __init__(self, config: EdgedConfig, setup: HelperSetup, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        shadow = config.monitor.shadow
        self.setup = setup
        self.reference = setup.reference.variant
        self.floor = shadow.min_agreement
        self.judge = ShadowJudge(shadow.window, shadow.min_agreement)
        self.metrics = ShadowMetrics(registry)
        self.kept = KeptProcess("shadow helper", "edged-shadow", RESTART_BACKOFF,
                                STABLE_AFTER_S, clock)  # fmt: skip
        self.sock: zmq.Socket | None = None
        self.notes: dict[str, str] = {}  # camera → its STATUS note while below the floor
        self.cameras = set(camera_thresholds(config))  # reports of others are late: ignored

    @classmethod
    def for_config(cls, config: EdgedConfig, runtime_dir: Path, registry: CollectorRegistry,
                   source: str = "config") -> ShadowMonitor | None:  # fmt: skip
        """None when the monitor is off; a ConfigError when the reference variant is not
        there (checked when edged starts, before anything runs)."""
        reference = resolve_reference(config, source)
        if reference is None:
            return None
        return cls(config, HelperSetup(config, reference, runtime_dir), registry)

    def start(self) -> None:
        if self.sock is None:
            self.sock = zmq.Context.instance().socket(zmq.PULL)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.bind(report_endpoint(self.setup.runtime_dir))
        from edged.monitor.helper import main

        pid = self.kept.start(main, self.setup)
        shadow = self.setup.config.monitor.shadow
        log.info("shadow monitor: comparing with %s at most every %g s (pid %d)", self.reference,
                 shadow.every_s, pid)  # fmt: skip

    def use_config(self, config: EdgedConfig) -> None:
        """A reload changed the cameras: a helper that decodes each camera with its new
        conf_threshold (started again only when they changed), and the removed cameras' window,
        STATUS note and metric series forgotten."""
        old = self.setup.config
        self.setup = HelperSetup(config, self.setup.reference, self.setup.runtime_dir)
        self.cameras = set(camera_thresholds(config))
        for camera in [c for c in self.judge.cameras if c not in self.cameras]:
            window = self.judge.cameras.pop(camera)
            self.notes.pop(camera, None)
            self.metrics.forget(camera, window.variant)
        before = camera_thresholds(old)  # a camera it never heard of: the section's threshold
        changed = any(before.get(c, None) != t for c, t in camera_thresholds(config).items())
        if changed and self.kept.started:
            log.info("shadow monitor: cameras changed; starting the helper again")
            self.kept.stop()
            self.start()

    def check(self) -> None:
        """Every supervisor turn: read the reports waiting, restart a helper that died."""
        self._read_reports()
        if self.kept.due():
            self.start()

    def _read_reports(self) -> None:
        if self.sock is None:
            return
        for _ in range(MAX_REPORTS_PER_TURN):
            try:
                data = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                report = pickle.loads(data)  # the helper's, through the private runtime dir
            except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as exc:
                log.error("shadow monitor: unreadable report: %s", exc)
                continue
            # A removed camera's sample checked before the reload must not bring it back.
            if isinstance(report, ShadowReport) and report.camera_id in self.cameras:
                self.take(report)

    def take(self, report: ShadowReport) -> Update:
        update = self.judge.take(report)
        self.metrics.record(update)
        pooled = update.pooled
        if pooled is not None and update.camera in self.judge.below:
            self.notes[update.camera] = (
                f"shadow: {update.camera} {update.variant} agrees {pooled.f1:.2f} with "
                f"{self.reference} (floor {self.floor:.2f})"
            )
        else:
            self.notes.pop(update.camera, None)
        if update.fell_below and pooled is not None:
            log.warning("%s over the last %d checks (recall %.2f, precision %.2f): the served "
                        "variant may no longer suit this camera", self.notes[update.camera],
                        update.checks, pooled.recall, pooled.precision)  # fmt: skip
        if update.recovered:
            log.info("shadow: %s %s agrees with %s above the floor again", update.camera,
                     update.variant, self.reference)  # fmt: skip
        return update

    @property
    def note(self) -> str:
        """For systemd's STATUS: the cameras whose agreement is below the floor."""
        return "; ".join(self.notes[camera] for camera in sorted(self.notes))

    @property
    def pid(self) -> int | None:
        return self.kept.pid

    def stop(self, timeout_s: float = 5.0) -> None:
        self.kept.stop(timeout_s)
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None
        for endpoint in (sample_endpoint(self.setup.runtime_dir),
                         report_endpoint(self.setup.runtime_dir)):  # fmt: skip
            with contextlib.suppress(OSError):
                Path(endpoint.removeprefix("ipc://")).unlink()
