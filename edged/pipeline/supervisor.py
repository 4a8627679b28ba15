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
from typing import TYPE_CHECKING, Any, TypeVar

import zmq

from edged.config import CameraConfig, ConfigError, EdgedConfig
from edged.control import error_reply, reply
from edged.http_server import HttpServer, http_limits
from edged.integrations.mqtt.process import MqttBridgeProcess
from edged.metrics import HailoCollector, Metrics, ProcessCollector
from edged.models import ModelError, load_manifest, resolve_from_config
from edged.monitor.process import ShadowMonitor
from edged.pi_health import PiHealthCollector
from edged.pipeline.camera_changes import CameraChanges, camera_changes
from edged.pipeline.camera_set import CameraRun, CameraSet
from edged.pipeline.control_server import ControlServer
from edged.pipeline.endpoints import Endpoints
from edged.pipeline.hailo_temperature import HailoTemperature
from edged.pipeline.layout import PER_CAMERA, instance_name
from edged.pipeline.liveness import Liveness
from edged.pipeline.messages import (
    CAPTURE,
    INFER,
    POSTPROCESS,
    PREPROCESS,
    PUBLISH,
    Cameras,
    Command,
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
    TrackingOff,
)
from edged.pipeline.reload import DeferredReloads, reread_config
from edged.pipeline.runtime_dir import daemon_runtime_dir, ensure_private_dir
from edged.pipeline.runtime_lock import AlreadyRunning, RuntimeDirLock
from edged.pipeline.shm_cleanup import remove_stale_segments
from edged.pipeline.stage_channel import StageChannel
from edged.pipeline.stage_processes import StageProcesses
from edged.pipeline.stage_runtime import (
    FRAMES,
    OUTPUTS,
    PER_CAMERA_RINGS,
    RING_OWNER,
    TENSORS,
    StageSetup,
    ring_key,
)
from edged.pipeline.status import combined_mode, model_status, pipeline_status, status_line
from edged.pipeline.swaps import STAGE_RESTARTING, Adopted, SwapCoordinator
from edged.pipeline.systemd_status import SystemdReporter
from edged.pipeline.telemetry import Telemetry
from edged.sdnotify import SystemdNotifier
from edged.sources import source_kind

if TYPE_CHECKING:  # the preview is imported only when enabled
    from edged.preview.routes import PreviewRoutes

log = logging.getLogger(__name__)

E = TypeVar("E", bound=StageEvent)  # type: ignore[misc]

SHM_PREFIX = "edged"
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


def _source_field(config: EdgedConfig, index: int) -> str:
    """Where camera ``index``'s source is in the file: ``source`` or ``cameras.1.source`` (the
    config's own error paths)."""
    return f"cameras.{index}.source" if getattr(config, "cameras", None) else "source"


def pipeline_mode(config: EdgedConfig, source: str = "config") -> tuple[bool, str]:
    """(lossless, effective mode) from the configured modes and the source kinds. The pipeline
    is lossless or not as a whole (its shared stages wait or drop for every camera alike)."""
    modes = []
    for index, camera in enumerate(config.camera_list()):
        kind = source_kind(camera.source.uri)
        mode = camera_mode(camera)
        if mode == "lossless" and kind != "file":
            reason = f"lossless needs a file source; {kind} sources are live"
            raise ConfigError([(f"{_source_field(config, index)}.mode", reason)], source)
        modes.append(mode)
    lossless = [m == "lossless" for m in modes]
    if any(lossless) and not all(lossless):
        index = lossless.index(False)
        reason = "lossless cameras cannot share a daemon with live or realtime ones"
        raise ConfigError([(f"{_source_field(config, index)}.mode", reason)], source)
    return all(lossless), combined_mode(modes)


def camera_mode(camera: CameraConfig) -> str:
    """One camera's effective mode: ``auto`` is realtime for a file, live for a stream."""
    if camera.source.mode != "auto":
        return camera.source.mode
    return "realtime" if source_kind(camera.source.uri) == "file" else "live"


def base_stage(instance: str) -> str:
    """``capture`` of ``capture[cam1]``."""
    return instance.partition("[")[0]


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
        self.lossless = pipeline_mode(config, str(config_path or "command line"))[0]
        self.runtime_dir, self._temporary_dir = daemon_runtime_dir(config.runtime.runtime_dir)
        self.endpoints = Endpoints(self.runtime_dir)
        self.lock = RuntimeDirLock(self.runtime_dir)
        self.ctx = zmq.Context.instance()
        self.processes = StageProcesses(config.pipeline.layout, config.pipeline)
        self.channel = StageChannel(self.ctx, self.endpoints.supervisor, self.processes)
        # A daemon started with one camera keeps the plain stage names (capture, ...).
        self.cameras = CameraSet(config)
        cameras = config.camera_list()
        for camera in cameras:
            self._add_camera(camera, "" if len(cameras) == 1 else camera.id)
        self._ended_cameras: set[str] = set()  # their end-of-stream marker was published
        self._tracking_off: dict[str, str] = {}  # camera → why its tracking is off
        self.control = ControlServer(self.ctx, config.control, self.endpoints.control)
        self.swaps = SwapCoordinator(self.telemetry, self._send_all, self.control.reply)
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
        self.shadow = ShadowMonitor.for_config(config, self.runtime_dir, self.metrics.registry,
                                               str(config_path or "command line"))  # fmt: skip

    # -- start-up --------------------------------------------------------------------------------

    # -- cameras ---------------------------------------------------------------------------------

    def _add_camera(self, camera: CameraConfig, tag: str) -> list[str]:
        """Register ``camera`` (its processes are not started here); its process names."""
        self.cameras.add(camera, tag)
        self.telemetry.add_camera(camera.id)
        return self.processes.add_camera(camera.id, tag)

    def _send_all(self, stage: str, command: Command) -> bool:
        """``command`` to every instance of ``stage``; True when all got it."""
        return all([self.channel.send(i, command) for i in self.cameras.instances_of(stage)])

    def _camera_of(self, instance: str) -> str:
        """The camera of a per-camera stage instance ("" for a shared stage)."""
        if not self.processes.knows(instance):
            return ""
        return self.processes.camera_of[self.processes.process_of(instance)]

    def _socket_files(self) -> list[Path]:
        rings = [*self.cameras.all_rings()] or [FRAMES, TENSORS, OUTPUTS]
        names = ("supervisor.sock", "control.sock",
                 *(f"{s}.in" for s in self.processes.instances()),
                 *(f"{r}.free" for r in rings))  # fmt: skip
        return [self.runtime_dir / name for name in names]

    def _prepare_runtime_dir(self) -> None:
        ensure_private_dir(self.runtime_dir)  # refuses another user's directory
        self.lock.acquire()  # before touching anything another daemon might be using
        for path in self._socket_files():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _spawn(self, stage: str, model: ModelDescriptor | None = None) -> None:
        """Start the process that runs the stage instance ``stage`` and the rest of its group."""
        name = self.processes.process_of(stage)
        group = self.processes.groups[name]
        camera = self.processes.camera_of[name]
        cameras = self.cameras.runs_of(camera)
        setups = [
            StageSetup(
                stage=member,
                config=self.config,
                runtime_dir=self.runtime_dir,
                rings=self.cameras.rings_of(member, camera),
                lossless=self.lossless,
                model=model,
                extra={"resolved": self.resolved} if member == INFER else {},
                group=group,
                camera=camera,
                tag=self.processes.tag_of[name],
                cameras=tuple(run.config for run in cameras),
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
                self.telemetry.handle(base_stage(sender), event, self._camera_of(sender))
            elif not self.processes.is_running(stage):
                code = self.processes.exitcode(stage)
                raise StartupError(f"{stage} stage exited during start-up (exit code {code})")
        raise StartupError(f"{stage} stage not ready within {STARTUP_TIMEOUT_S:.0f}s")

    def start(self) -> None:
        self._prepare_runtime_dir()
        remove_stale_segments(SHM_PREFIX)
        start_resource_tracker()
        self.channel.bind()
        self.cameras.create_rings(f"{SHM_PREFIX}_{os.getpid()}_{uuid.uuid4().hex[:6]}")
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
        log.info("publishing detections.{%s} on %s", ",".join(self.cameras),
                 self.publish_endpoint)  # fmt: skip
        self._spawn_stage(POSTPROCESS, model)
        for run in self.cameras.values():
            self._start_camera(run, model)
        self.control.start()
        # Another subscriber of the detections, in its own process: a broker never stalls frames.
        self.mqtt = MqttBridgeProcess.start_for(
            self.config, self.publish_endpoint, self.control.endpoint, self.metrics.registry
        )
        if self.shadow is not None:  # checks published frames; the live path never waits on it
            self.shadow.start()

    def _start_camera(self, run: CameraRun, model: ModelDescriptor) -> None:
        """Start a camera's processes, the last stage first (its inbox is there when frames
        come)."""
        for stage in reversed(PER_CAMERA):
            self._spawn_stage(instance_name(stage, run.tag), model)

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

            self.preview_routes = install_preview(
                self.http, self.config, self.runtime_dir, self.status,
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
            if self.shadow is not None:
                self.shadow.check()
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
    preview_routes: PreviewRoutes | None = None

    def _recv_event(self) -> tuple[str, StageEvent] | None:
        """(sending stage instance, its event); None when nothing is waiting."""
        received = self.channel.receive()
        if received is not None:
            self.liveness.heard(self.processes.process_of(received[0]), time.monotonic())
        return received

    def _drain_events(self) -> None:
        while (received := self._recv_event()) is not None:
            sender, event = received
            stage = base_stage(sender)
            self.telemetry.handle(stage, event, self._camera_of(sender))
            if isinstance(event, Fatal):
                log.error("%s stage failed: %s", sender, event.error)
                self.exit_code = 1
                self._drain_requested = True
            elif isinstance(event, TrackingOff):
                self._tracking_off[event.camera] = event.reason
                if not event.reason:
                    del self._tracking_off[event.camera]
            elif isinstance(event, SwapDone | SwapFailed):
                self._adopt(self.swaps.on_result(event))
            elif isinstance(event, EndOfStream) and stage == PUBLISH:
                self._ended_cameras.add(event.camera)
                if not set(self.cameras) <= self._ended_cameras:
                    log.info("camera %s ended", event.camera)
                    continue
                self._every_source_ended()

    def _every_source_ended(self) -> None:
        """The last camera's end went through: exit (or idle), or the drain is done."""
        self._source_finished = True
        if self._draining_since is not None:
            self._drained = True
        elif self.config.pipeline.exit_at_end:
            log.info("source ended; exiting (pipeline.exit_at_end)")
            self._drained = True
        else:
            log.info("source ended; idle until stopped (set source.loop to repeat)")

    def _forget_ends(self, changes: CameraChanges) -> None:
        """A reload's cameras: a restarted or added camera plays again (its old end no longer
        counts, and a drain must wait for it); one removed no longer counts either. When the
        cameras left have all ended (the one still playing was removed), that is the end."""
        for camera_id in [*changes.removed, *(c.id for c in (*changes.restarted, *changes.added))]:
            self._ended_cameras.discard(camera_id)
        finished = bool(self.cameras) and set(self.cameras) <= self._ended_cameras
        if finished and not self._source_finished:
            self._every_source_ended()
        self._source_finished = finished

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
        """Respawn a stage process and take back the ring slots its death stranded: its own
        camera's (a per-camera process) or every camera's (a shared one)."""
        group = self.processes.groups[name]
        tag = self.processes.tag_of[name]
        camera = self.processes.camera_of[name]
        self._spawn(instance_name(group[0], tag), self.telemetry.state.model)
        runs = self.cameras.runs_of(camera)
        stranded: set[tuple[str, str]] = set()  # (owner instance, ring)
        for kind in {kind for stage in group for kind in RECLAIM_ON_RESTART[stage]}:
            if kind not in PER_CAMERA_RINGS:
                stranded.add((RING_OWNER[kind], kind))
                continue
            for run in runs:
                owner = instance_name(RING_OWNER[kind], run.tag)
                stranded.add((owner, ring_key(kind, run.config.id)))
        for owner, ring in sorted(stranded):
            if self.processes.process_of(owner) != name:  # the new process's rings start free
                self.channel.send(owner, Reclaim(ring))

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
        self._send_all(CAPTURE, Drain())

    def readiness(self) -> tuple[bool, str]:
        """/readyz's verdict. Frames are reported with the publish stage's counters, up to one
        ``stats_interval_s`` after they went out: that much is added to the allowed age."""
        ready, reason = self.telemetry.ready(self._ready_max_age())
        return ready, reason + self._tracking_note()

    def _tracking_note(self) -> str:
        """The cameras whose tracking is off, and why (their detections still flow)."""
        off = [f"{cam}: tracking off ({why})" for cam, why in sorted(self._tracking_off.items())]
        return f"; degraded: {'; '.join(off)}" if off else ""

    def _ready_max_age(self) -> float:
        return self.config.http.ready_max_age_s + self.config.pipeline.stats_interval_s

    def status_line(self) -> str:
        note = self.shadow.note if self.shadow is not None else ""
        line = status_line(self.telemetry.state) + self._tracking_note()
        return line + (f"; {note}" if note else "")

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
        # Modes from the running config: a reload may have added or changed cameras.
        modes = {camera.id: camera_mode(camera) for camera in self.config.camera_list()}
        pipeline = pipeline_status(self.telemetry.state, modes)
        verdicts = self.telemetry.camera_verdicts(self._ready_max_age())
        for camera, report in pipeline["cameras"].items():
            ready, reason = verdicts.get(camera, (False, "not configured"))
            run = self.cameras.get(camera)
            stages = [instance_name(s, run.tag) for s in PER_CAMERA] if run else []
            report.update(ready=ready, reason=reason, stages=stages,
                          tracking_off=self._tracking_off.get(camera))  # fmt: skip
        return {
            "model": model_status(self.telemetry.state.model),
            "variants": variants,
            "swap_in_progress": self.swaps.in_progress,
            **pipeline,
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
        needs_restart = list(reloaded.needs_restart)
        cameras = camera_changes(self.config.camera_list(), reloaded.config.camera_list())
        if cameras and pipeline_mode(reloaded.config, source)[0] != self.lossless:
            needs_restart.append("cameras (lossless and live cameras)")
        elif cameras:
            self.apply_cameras(cameras, reloaded.config)
        if needs_restart:
            log.warning("reload: changes to %s take effect after a restart",
                        ", ".join(needs_restart))  # fmt: skip
        log.info("config reloaded from %s", self.config_path)
        if "model" in reloaded.changed:
            self.swap(reloaded.config.model.variant, identity, reloaded.config)
        else:
            self.control.reply(identity, reply(True, changed=reloaded.changed,
                                               needs_restart=needs_restart,
                                               cameras=cameras.summary(),
                                               active=self.swaps.active_variant()))  # fmt: skip
        self.systemd.reloaded()

    def apply_cameras(self, changes: CameraChanges, new: EdgedConfig) -> None:
        """A reload's camera changes, the other cameras untouched: stop the removed cameras'
        processes (then the shared stages let go of their rings, which are unlinked), restart
        the changed ones (their rings stay: frames in flight are still published), start the
        new ones (the shared stages attach their rings first)."""
        log.info("reload: cameras %s", changes.summary())
        for camera_id in [*changes.removed, *(c.id for c in changes.restarted)]:
            self._stop_camera(camera_id)
        removed = [self.cameras.pop(camera_id) for camera_id in changes.removed]
        for camera_id in changes.removed:
            self.processes.remove_camera(camera_id)
            self.telemetry.remove_camera(camera_id)
            self._tracking_off.pop(camera_id, None)
        self.config = self.config.model_copy(update={
            "cameras": new.cameras, "source": new.source, "camera_id": new.camera_id})  # fmt: skip
        for camera in [*changes.updated, *changes.restarted]:
            self.cameras[camera.id].config = camera
        for camera in changes.added:
            self._add_camera(camera, camera.id)  # with its rings
        # The shared stages' view: every camera's config and rings (before any new frame).
        command = Cameras(tuple(run.config for run in self.cameras.values()),
                          self.cameras.all_rings())  # fmt: skip
        for stage in (INFER, POSTPROCESS, PUBLISH):
            self.channel.send(stage, command)
        for run in removed:
            run.unlink()
        model = self.telemetry.state.model
        assert model is not None
        for camera in [*changes.restarted, *changes.added]:
            run = self.cameras[camera.id]
            for name in self.processes.add_camera(camera.id, run.tag):
                self.processes.by_name.pop(name, None)  # a restarted camera's stopped process
            self._start_camera(run, model)
        # The helpers that speak per camera follow the new set.
        if self.preview_routes is not None:
            self.preview_routes.use_cameras(list(self.cameras))
        if self.mqtt is not None:
            self.mqtt.use_config(self.config)
        if self.shadow is not None:
            self.shadow.use_config(self.config)
        self._forget_ends(changes)

    def _stop_camera(self, camera_id: str) -> None:
        """Stop one camera's processes and wait for them (the others keep running)."""
        tag = self.cameras[camera_id].tag
        for stage in PER_CAMERA:
            self.channel.send(instance_name(stage, tag), Stop(), say_if_lost=False)
        names = [n for n, cam in self.processes.camera_of.items() if cam == camera_id]
        self.processes.stop(names=names)
        for name in names:
            self.processes.by_name.pop(name, None)  # not a death: never restarted

    # -- shutdown --------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self._answer_waiting_clients(SHUTTING_DOWN)  # before the control socket closes
        for stage in self.processes.instances():
            if self.processes.started(stage):
                self.channel.send(stage, Stop(), say_if_lost=False)  # an exited stage needs none
        self.processes.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.shadow is not None:
            self.shadow.stop()
        if self.http is not None:
            self.http.stop()
        self.control.close()
        self.channel.close()
        self.cameras.unlink_all()
        if self.lock.held:  # only the daemon that owns the directory clears it
            for path in self._socket_files():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            self.lock.release()
            if self._temporary_dir:  # our own mkdtemp: leave nothing behind in /tmp
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
        log.info("stopped")
