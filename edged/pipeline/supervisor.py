"""The supervisor: owns config, shared memory and sockets; spawns and watches the stage processes.

It serves /metrics /healthz /readyz, answers the control socket, talks to systemd, turns
SIGTERM/SIGINT into a drain (every frame already captured is still published) and SIGHUP into a
config reload. The parts live beside it: the processes (stage_processes), the stages' channel
(stage_channel), the control socket (control_server), what systemd hears (systemd_status), the
status report (status), re-reading the config (reload), swaps (swaps), metrics (telemetry).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
import uuid
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any, TypeVar

import zmq

from edged.config import ConfigError, EdgedConfig
from edged.control import error_reply, reply
from edged.http_server import HttpServer, http_limits
from edged.integrations.mqtt.process import MqttBridgeProcess
from edged.metrics import HailoCollector, Metrics, ProcessCollector
from edged.models import ModelError, load_manifest, resolve_from_config
from edged.pi_health import PiHealthCollector
from edged.pipeline.control_server import ControlServer
from edged.pipeline.endpoints import Endpoints
from edged.pipeline.hailo_temperature import HailoTemperature
from edged.pipeline.liveness import Liveness
from edged.pipeline.messages import (
    CAPTURE,
    INFER,
    POSTPROCESS,
    PREPROCESS,
    PUBLISH,
    STAGE_ORDER,
    Drain,
    EndOfStream,
    Fatal,
    InferenceReady,
    ModelDescriptor,
    PublishReady,
    Reclaim,
    StageEvent,
    Stop,
    SwapDone,
    SwapFailed,
)
from edged.pipeline.reload import DeferredReloads, reread_config
from edged.pipeline.ring import RingSpec, SharedRing, create_ring
from edged.pipeline.runtime_dir import daemon_runtime_dir, ensure_private_dir
from edged.pipeline.runtime_lock import AlreadyRunning, RuntimeDirLock
from edged.pipeline.shm_cleanup import remove_stale_segments
from edged.pipeline.stage_channel import StageChannel
from edged.pipeline.stage_processes import StageProcesses
from edged.pipeline.stage_runtime import FRAMES, OUTPUTS, RING_OWNER, TENSORS, StageSetup
from edged.pipeline.status import model_status, pipeline_status, status_line
from edged.pipeline.swaps import STAGE_RESTARTING, Adopted, SwapCoordinator
from edged.pipeline.systemd_status import SystemdReporter
from edged.pipeline.telemetry import Telemetry
from edged.sdnotify import SystemdNotifier
from edged.sources import source_kind

log = logging.getLogger(__name__)

E = TypeVar("E", bound=StageEvent)  # type: ignore[misc]

SHM_PREFIX = "edged"
MAX_INPUT_SIDE = 1280  # tensor slots fit inputs up to 1280×1280×3 float32
STARTUP_TIMEOUT_S = 120.0

DRAIN_TIMEOUT_S = 15.0
SHUTTING_DOWN = "edged is shutting down"
TOO_MANY_RELOADS = "too many reloads waiting for the swap in progress; retry when it ended"


# Rings whose slots a dead stage may strand (held by it or by frames in its lost inbox).
RECLAIM_ON_RESTART: dict[str, tuple[str, ...]] = {
    CAPTURE: (),
    PREPROCESS: (FRAMES,),
    INFER: (FRAMES, TENSORS),
    POSTPROCESS: (FRAMES, OUTPUTS),
    PUBLISH: (FRAMES,),
}
# The rings each stage attaches to.
RINGS_OF_STAGE: dict[str, tuple[str, ...]] = {
    CAPTURE: (FRAMES,),
    PREPROCESS: (FRAMES, TENSORS, OUTPUTS),
    INFER: (FRAMES, TENSORS, OUTPUTS),
    POSTPROCESS: (FRAMES, TENSORS, OUTPUTS),
    PUBLISH: (FRAMES, TENSORS, OUTPUTS),
}


def start_resource_tracker() -> None:
    """multiprocessing's resource tracker (it unlinks the rings when the supervisor is killed)
    is one of the service's processes too: `systemctl kill -s HUP` must not end it. Started
    with SIGHUP blocked, a mask it keeps (only the supervisor handles SIGHUP)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class StartupError(RuntimeError):
    """The pipeline could not start; the message says which part and why."""

    def __init__(self, message: str, bad_model: bool = False) -> None:
        super().__init__(message)
        self.bad_model = bad_model  # the model file itself: exit 2, a restart cannot help


def pipeline_mode(config: EdgedConfig, source: str = "config") -> tuple[bool, str]:
    """(lossless, effective mode) from the configured mode and the source kind."""
    kind = source_kind(config.source.uri)
    mode = config.source.mode
    if mode == "auto":
        mode = "realtime" if kind == "file" else "live"
    if mode == "lossless" and kind != "file":
        raise ConfigError(
            [("source.mode", f"lossless needs a file source; {kind} sources are live")], source
        )
    return mode == "lossless", mode


def ring_specs(config: EdgedConfig, tag: str) -> dict[str, RingSpec]:
    p = config.pipeline
    return {
        FRAMES: RingSpec(
            f"{tag}_{FRAMES}", p.ring_slots, p.max_frame_width * p.max_frame_height * 3
        ),
        TENSORS: RingSpec(f"{tag}_{TENSORS}", 4, MAX_INPUT_SIDE * MAX_INPUT_SIDE * 3 * 4),
        OUTPUTS: RingSpec(f"{tag}_{OUTPUTS}", 4, int(p.max_output_mb * 1024 * 1024)),
    }


class Supervisor:
    def __init__(
        self,
        config: EdgedConfig,
        config_path: Path | None = None,
        metrics: Metrics | None = None,
        notifier: SystemdNotifier | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        # The command line's overrides of the file (`edged run --variant ...`): a reload applies
        # them again, or every overridden section would read as changed.
        self.overrides = overrides or {}
        self.metrics = metrics or Metrics()
        self.telemetry = Telemetry(self.metrics)
        if config.tracking.enabled:
            self.metrics.prepare_tracking(config.tracking.zones, config.tracking.lines)
        self.lossless, self.mode = pipeline_mode(config, str(config_path or "command line"))
        self.runtime_dir, self._temporary_dir = daemon_runtime_dir(config.runtime.runtime_dir)
        self.endpoints = Endpoints(self.runtime_dir)
        self.lock = RuntimeDirLock(self.runtime_dir)
        self.ctx = zmq.Context.instance()
        self.processes = StageProcesses(config.pipeline.layout, config.pipeline)
        self.channel = StageChannel(self.ctx, self.endpoints.supervisor, STAGE_ORDER)
        self.control = ControlServer(self.ctx, config.control, self.endpoints.control)
        self.rings: list[SharedRing] = []
        self.ring_specs: dict[str, RingSpec] = {}
        self.swaps = SwapCoordinator(self.telemetry, self.channel.send, self.control.reply)
        self.started_at = time.monotonic()
        self.exit_code = 0
        self._drain_requested = False
        self._reload_requested = False
        self.deferred_reloads = DeferredReloads()
        self._draining_since: float | None = None
        self.liveness = Liveness(
            silence_s=max(5.0, 10 * config.pipeline.stats_interval_s),
            start_grace_s=STARTUP_TIMEOUT_S,
        )
        self.systemd = SystemdReporter(
            notifier or SystemdNotifier(), self.liveness,
            config.runtime.ready_without_frames_s, self.started_at, self.status_line,
        )  # fmt: skip
        self.http: HttpServer | None = None
        self.resolved = resolve_from_config(config.model)

    # -- start-up --------------------------------------------------------------------------------

    def _socket_files(self) -> list[Path]:
        names = ("supervisor.sock", "control.sock", *(f"{s}.in" for s in STAGE_ORDER),
                 *(f"{r}.free" for r in (FRAMES, TENSORS, OUTPUTS)))  # fmt: skip
        return [self.runtime_dir / name for name in names]

    def _prepare_runtime_dir(self) -> None:
        ensure_private_dir(self.runtime_dir)  # refuses another user's directory
        self.lock.acquire()  # before touching anything another daemon might be using
        for path in self._socket_files():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _spawn(self, stage: str, model: ModelDescriptor | None = None) -> None:
        """Start the process that runs ``stage`` and the rest of its group."""
        group = self.processes.groups[self.processes.process_of(stage)]
        setups = [
            StageSetup(
                stage=member,
                config=self.config,
                runtime_dir=self.runtime_dir,
                rings={ring: self.ring_specs[ring] for ring in RINGS_OF_STAGE[member]},
                lossless=self.lossless,
                model=model,
                extra={"resolved": self.resolved} if member == INFER else {},
                group=group,
            )
            for member in group
        ]
        self.liveness.started(self.processes.spawn(setups), time.monotonic())

    def _spawn_stage(self, stage: str, model: ModelDescriptor | None = None) -> None:
        """Start the process hosting ``stage`` unless it already runs (with a neighbour)."""
        if not self.processes.started(stage):
            self._spawn(stage, model)

    def _wait_for(self, stage: str, kind: type[E]) -> E:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._drain_requested:
                raise StartupError("interrupted during start-up")
            if self.channel.poll(100):
                received = self._recv_event()
                if received is None:
                    continue
                sender, event = received
                if isinstance(event, Fatal) and sender == stage:
                    raise StartupError(f"{stage} stage: {event.error}", event.bad_model)
                if sender == stage and isinstance(event, kind):
                    return event
                self.telemetry.handle(sender, event)
            elif not self.processes.is_running(stage):
                code = self.processes.exitcode(stage)
                raise StartupError(f"{stage} stage exited during start-up (exit code {code})")
        raise StartupError(f"{stage} stage not ready within {STARTUP_TIMEOUT_S:.0f}s")

    def start(self) -> None:
        self._prepare_runtime_dir()
        remove_stale_segments(SHM_PREFIX)
        start_resource_tracker()
        self.channel.bind()
        tag = f"{SHM_PREFIX}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.ring_specs = ring_specs(self.config, tag)
        self.rings = [create_ring(spec) for spec in self.ring_specs.values()]
        self.metrics.registry.register(ProcessCollector(self.processes.table))
        self.metrics.registry.register(PiHealthCollector())
        self.metrics.registry.register(HailoCollector(HailoTemperature(
            self.config.inference.hailo.device_id, lambda: self.telemetry.state.model
        )))  # fmt: skip
        # HTTP first: /healthz and /metrics answer (and /readyz says why not ready) while the
        # model loads.
        self._start_http()

        self._spawn_stage(INFER)
        model = self._wait_for(INFER, InferenceReady).model
        self.telemetry.set_model(model)
        log.info("serving %s (%s, %s, input %dx%d %s, output %s)", model.key, model.backend,
                 model.precision, model.input_width, model.input_height, model.input_layout,
                 model.output_layout)  # fmt: skip
        self._spawn_stage(PUBLISH, model)
        self.publish_endpoint = self._wait_for(PUBLISH, PublishReady).endpoint
        log.info("publishing detections.%s on %s", self.config.camera_id, self.publish_endpoint)
        self._spawn_stage(POSTPROCESS, model)
        self._spawn_stage(PREPROCESS, model)
        self._spawn_stage(CAPTURE, model)
        self.control.start()
        # Another subscriber of the detections, in its own process: a broker never stalls frames.
        self.mqtt = MqttBridgeProcess.start_for(
            self.config, self.publish_endpoint, self.control.endpoint, self.metrics.registry
        )

    def _start_http(self) -> None:
        cfg = self.config.http
        if not cfg.enabled:
            return
        self.http = HttpServer(
            cfg.host, cfg.port, self.metrics.registry, self.processes.health,
            self.readiness, limits=http_limits(cfg), allowed_hosts=cfg.allowed_hosts,
        )  # fmt: skip
        if self.config.preview.enabled:
            from edged.preview.routes import install_preview

            install_preview(self.http, self.config, self.runtime_dir, self.status,
                            self.config.control.endpoint or self.endpoints.control)  # fmt: skip
            log.info("live preview on http://%s:%d/preview", cfg.host, self.http.port)
        self.http.start()
        log.info("metrics on http://%s:%d/metrics", cfg.host, self.http.port)

    # -- main loop -------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        def on_term(signum: int, _frame: object) -> None:
            self._drain_requested = True

        def on_hup(signum: int, _frame: object) -> None:
            self._reload_requested = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)

    def run(self) -> int:
        """Start, serve until told to stop, drain, clean up; returns the exit status."""
        self._install_signals()
        try:
            try:
                self.start()
            except (StartupError, AlreadyRunning, ModelError, OSError, zmq.ZMQError) as exc:
                log.error("cannot start: %s", exc)
                self.exit_code = 2 if getattr(exc, "bad_model", False) else 1
                return self.exit_code
            self._serve()
        except Exception:
            # Never hang on a bug: log it, stop the stages, exit non-zero (systemd restarts us).
            log.exception("supervisor failed")
            self.exit_code = 1
        finally:
            self.shutdown()
        return self.exit_code

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.channel.socket, zmq.POLLIN)
        poller.register(self.control.socket, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(100))
            if self.channel.socket in ready:
                self._drain_events()
            if self.control.socket in ready:
                self._handle_control()
            self._service_requests()
            if self.mqtt is not None:
                self.mqtt.check()
            self.systemd.tick(self.telemetry.state.published, self.processes.running(),
                              lambda: self.readiness()[1])  # fmt: skip
            if self._check_processes():
                return
            if self._drain_requested and self._draining_since is None:
                self._begin_drain()
            if self._draining_since is not None and (
                time.monotonic() - self._draining_since > DRAIN_TIMEOUT_S
            ):
                log.warning("drain did not finish within %.0fs; stopping now", DRAIN_TIMEOUT_S)
                return
            if self._drained:
                return

    def _service_requests(self) -> None:
        """Every turn: a SIGHUP's reload, a swap's timeout or reply, a reload that waited."""
        if self._reload_requested:
            self._reload_requested = False
            self.reload(identity=None)
        self.swaps.check()
        if self.deferred_reloads and not self.swaps.in_progress:
            self.reload(self.deferred_reloads.pop(), deferred=True)

    _drained = False
    _source_finished = False
    mqtt: MqttBridgeProcess | None = None

    def _recv_event(self) -> tuple[str, StageEvent] | None:
        """(sending stage, its event); None when nothing is waiting."""
        received = self.channel.receive()
        if received is not None:
            self.liveness.heard(self.processes.process_of(received[0]), time.monotonic())
        return received

    def _drain_events(self) -> None:
        while (received := self._recv_event()) is not None:
            stage, event = received
            self.telemetry.handle(stage, event)
            if isinstance(event, Fatal):
                log.error("%s stage failed: %s", stage, event.error)
                self.exit_code = 1
                self._drain_requested = True
            elif isinstance(event, SwapDone | SwapFailed):
                self._adopt(self.swaps.on_result(event))
            elif isinstance(event, EndOfStream) and stage == PUBLISH:
                self._source_finished = True
                if self._draining_since is not None:
                    self._drained = True
                elif self.config.pipeline.exit_at_end:
                    log.info("source ended; exiting (pipeline.exit_at_end)")
                    self._drained = True
                else:
                    log.info("source ended; idle until stopped (set source.loop to repeat)")

    def _check_processes(self) -> bool:
        """Restart dead stages with backoff; True when edged must stop (restart limit hit)."""
        if self._draining_since is not None:
            return False
        deaths = self.processes.check(time.monotonic())
        if deaths.gave_up:
            self.exit_code = 1
            return True
        for name in deaths.died:
            if INFER in self.processes.groups[name]:
                self.swaps.cancel("inference stage restarted during the swap")
        for name in deaths.due:
            for stage in self.processes.groups[name]:  # every stage of the process restarted
                self.metrics.stage_restarts.labels(stage).inc()
            self._restart(name)
        return False

    def _restart(self, name: str) -> None:
        """Respawn a stage process and take back the ring slots its death stranded."""
        group = self.processes.groups[name]
        self._spawn(group[0], self.telemetry.state.model)
        stranded = {ring for stage in group for ring in RECLAIM_ON_RESTART[stage]}
        for ring in sorted(stranded):
            if RING_OWNER[ring] not in group:  # a ring of the new process starts out free
                self.channel.send(RING_OWNER[ring], Reclaim(ring))

    def _answer_waiting_clients(self, why: str) -> None:
        """Clients waiting for a swap or a deferred reload hear ``why`` (not silence)."""
        self.swaps.cancel(why)
        for identity in self.deferred_reloads.take_all():
            self.control.reply(identity, error_reply(why))

    def _begin_drain(self) -> None:
        self.systemd.stopping()
        self._draining_since = time.monotonic()
        self._answer_waiting_clients(SHUTTING_DOWN)
        if self._source_finished:  # nothing in flight: the end already went through
            self._drained = True
            return
        log.info("stopping: draining frames in flight")
        self.channel.send(CAPTURE, Drain())

    def readiness(self) -> tuple[bool, str]:
        """/readyz's verdict. Frames are reported with the publish stage's counters, up to one
        ``stats_interval_s`` after they went out: that much is added to the allowed age."""
        slack = self.config.pipeline.stats_interval_s
        return self.telemetry.ready(self.config.http.ready_max_age_s + slack)

    def status_line(self) -> str:
        return status_line(self.telemetry.state)

    # -- control ---------------------------------------------------------------------------------

    def _handle_control(self) -> None:
        for identity, request in self.control.requests():
            try:
                if self._draining_since is not None and request.command != "status":
                    self.control.reply(identity, error_reply(SHUTTING_DOWN))
                elif request.command == "status":
                    self.control.reply(identity, reply(True, **self.status()))
                elif request.command == "swap":
                    assert request.variant is not None
                    self.swap(request.variant, identity)
                elif request.command == "reload":
                    self.reload(identity)
            except Exception as exc:  # one bad request must never take the daemon down
                log.exception("control request %s failed", request.command)
                self.control.reply(identity, error_reply(f"internal error: {exc}"))

    def status(self) -> dict[str, Any]:
        variants: list[str] = []
        if self.config.model.manifest and self.resolved.manifest_path:
            with contextlib.suppress(ModelError):
                variants = list(load_manifest(self.resolved.manifest_path).variants)
        return {
            "camera_id": self.config.camera_id,
            "model": model_status(self.telemetry.state.model),
            "variants": variants,
            "swap_in_progress": self.swaps.in_progress,
            **pipeline_status(self.telemetry.state, self.mode),
            "stages": self.processes.stage_status(),
            "publish_endpoint": getattr(self, "publish_endpoint", None),
            "subscribers": self.telemetry.state.subscribers,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
        }

    def swap(self, variant: str, identity: bytes | None, config: EdgedConfig | None = None) -> None:
        """Start a swap (a control request, or a reload's new model section)."""
        if not self.processes.is_running(INFER):  # dead, or waiting for its restart
            self.swaps.refuse(identity, variant, STAGE_RESTARTING)
            return
        self.swaps.request(variant, identity, (config or self.config).model, config)

    def _adopt(self, adopted: Adopted | None) -> None:
        """A swap succeeded: a restarted inference process loads the new variant, and a reload's
        model section becomes the running config's (so the next reload compares with it)."""
        if adopted is None:
            return
        self.resolved = adopted.resolved
        if adopted.model_config is not None:
            self.config = self.config.model_copy(update={"model": adopted.model_config})

    def reload(self, identity: bytes | None, deferred: bool = False) -> None:
        """Re-read the config file: swap if the model changed; refuse an invalid file. During a
        swap the reload waits for it to end (systemd hears RELOADING=1 now, READY=1 then)."""
        if self.config_path is None:
            self.control.reply(identity, error_reply("no config file to reload (started "
                                                     "without one)"))  # fmt: skip
            return
        if self.swaps.in_progress:
            if not self.deferred_reloads.add(identity):
                self.control.reply(identity, error_reply(TOO_MANY_RELOADS))
                return
            log.info("reload requested during a swap: it runs when the swap ends")
            self.systemd.reloading()
            return
        if not deferred:  # a deferred one said RELOADING=1 when it was asked for
            self.systemd.reloading()
        try:
            source = str(self.config_path)
            reloaded = reread_config(self.config_path, self.overrides, self.config,
                                     lambda new: pipeline_mode(new, source))  # fmt: skip
        except ConfigError as exc:
            log.error("reload refused, keeping the running config:\n%s", exc)
            self.control.reply(identity, error_reply(str(exc)))
            self.systemd.reloaded()
            return
        if reloaded.needs_restart:
            log.warning("reload: changes to %s take effect after a restart",
                        ", ".join(reloaded.needs_restart))  # fmt: skip
        log.info("config reloaded from %s", self.config_path)
        if "model" in reloaded.changed:
            self.swap(reloaded.config.model.variant, identity, reloaded.config)
        else:
            self.control.reply(identity, reply(True, changed=reloaded.changed,
                                               needs_restart=reloaded.needs_restart,
                                               active=self.swaps.active_variant()))  # fmt: skip
        self.systemd.reloaded()

    # -- shutdown --------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self._answer_waiting_clients(SHUTTING_DOWN)  # before the control socket closes
        for stage in STAGE_ORDER:
            if self.processes.started(stage):
                self.channel.send(stage, Stop(), say_if_lost=False)  # an exited stage needs none
        self.processes.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.http is not None:
            self.http.stop()
        self.control.close()
        self.channel.close()
        for ring in self.rings:
            ring.close()
            ring.unlink()
        self.rings = []
        if self.lock.held:  # only the daemon that owns the directory clears it
            for path in self._socket_files():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            self.lock.release()
            if self._temporary_dir:  # our own mkdtemp: leave nothing behind in /tmp
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
        log.info("stopped")
