"""The supervisor: owns config, shared memory and sockets; spawns and watches the stage processes.

It serves /metrics /healthz /readyz, answers the control socket, talks to systemd, turns
SIGTERM/SIGINT into a drain (every frame already captured is still published) and SIGHUP into a
config reload. Stages are started with the ``spawn`` method: no forked ONNX Runtime thread pools,
no inherited sockets.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import signal
import time
import uuid
from collections import deque
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any, TypeVar

import zmq

from edged.config import (
    ConfigError,
    EdgedConfig,
    PipelineConfig,
    apply_overrides,
    load_config,
)
from edged.control import (
    ProtocolError,
    configure_curve_server,
    error_reply,
    parse_request,
    reply,
    secure_ipc,
)
from edged.http_server import HttpServer, http_limits
from edged.integrations.mqtt.process import MqttBridgeProcess
from edged.metrics import HailoCollector, Metrics, ProcessCollector
from edged.models import ModelError, load_manifest, resolve_from_config
from edged.pi_health import PiHealthCollector
from edged.pipeline import stage_main
from edged.pipeline.backoff import Backoff
from edged.pipeline.endpoints import Endpoints
from edged.pipeline.layout import ProcessGroup, process_groups, process_name
from edged.pipeline.liveness import Liveness
from edged.pipeline.messages import (
    CAPTURE,
    INFER,
    POSTPROCESS,
    PREPROCESS,
    PUBLISH,
    STAGE_ORDER,
    Command,
    Drain,
    EndOfStream,
    Fatal,
    InferenceReady,
    MessageError,
    ModelDescriptor,
    PublishReady,
    Reclaim,
    StageEvent,
    Stop,
    SwapDone,
    SwapFailed,
    decode_event,
    encode,
)
from edged.pipeline.ring import RingSpec, SharedRing, create_ring
from edged.pipeline.runtime import FRAMES, OUTPUTS, RING_OWNER, TENSORS, StageSetup
from edged.pipeline.runtime_dir import daemon_runtime_dir, ensure_private_dir
from edged.pipeline.runtime_lock import AlreadyRunning, RuntimeDirLock
from edged.pipeline.shm_cleanup import remove_stale_segments
from edged.pipeline.swaps import STAGE_RESTARTING, Adopted, SwapCoordinator
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
MAX_DEFERRED_RELOADS = 4  # control clients whose reload waits for a swap to end


# Rings whose slots a dead stage may strand (held by it or by frames in its lost inbox).
RECLAIM_ON_RESTART: dict[str, tuple[str, ...]] = {
    CAPTURE: (),
    PREPROCESS: (FRAMES,),
    INFER: (FRAMES, TENSORS),
    POSTPROCESS: (FRAMES, OUTPUTS),
    PUBLISH: (FRAMES,),
}


def exit_cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


RESTART_BACKOFF = Backoff(initial_s=0.25, max_s=10.0)  # by restarts within the window


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
        self.notifier = notifier or SystemdNotifier()
        self.lossless, self.mode = pipeline_mode(config, str(config_path or "command line"))
        self.runtime_dir, self._temporary_dir = daemon_runtime_dir(config.runtime.runtime_dir)
        self.endpoints = Endpoints(self.runtime_dir)
        self.lock = RuntimeDirLock(self.runtime_dir)
        self.ctx = zmq.Context.instance()
        self.mp = mp.get_context("spawn")
        self.groups = {process_name(g): g for g in process_groups(config.pipeline.layout)}
        self.process_of_stage = {stage: name for name, g in self.groups.items() for stage in g}
        self.processes: dict[str, Any] = {}  # by process name (see edged.pipeline.layout)
        self.rings: list[SharedRing] = []
        self.ring_specs: dict[str, RingSpec] = {}
        self.swaps = SwapCoordinator(self.telemetry, self._send, self._reply)
        self.restarts: dict[str, RestartPolicy] = {}
        self._hailo_reader: Any = None
        self.started_at = time.monotonic()
        self.exit_code = 0
        self._drain_requested = False
        self._reload_requested = False
        # Reloads asked for during a swap (SIGHUP: None; control clients: their identity): they
        # run when the swap ends, so a model change is not refused for arriving at a bad time.
        self._deferred_reloads: deque[bytes | None] = deque()
        self._draining_since: float | None = None
        self._published_ready = False  # READY=1 sent: the first frame, or ready_without_frames_s
        self.liveness = Liveness(
            silence_s=max(5.0, 10 * config.pipeline.stats_interval_s),
            start_grace_s=STARTUP_TIMEOUT_S,
        )
        self._last_watchdog = 0.0
        self._stuck_said = False
        self._last_status = 0.0
        self.http: HttpServer | None = None
        self.control: zmq.Socket | None = None
        self._auth: Any = None
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

    def _process_of(self, stage: str) -> str:
        return self.process_of_stage[stage]

    def _spawn(self, group: ProcessGroup, model: ModelDescriptor | None = None) -> None:
        """Start the process that runs the stages of ``group``."""
        setups = [
            StageSetup(
                stage=stage,
                config=self.config,
                runtime_dir=self.runtime_dir,
                rings=self._rings_for(stage),
                lossless=self.lossless,
                model=model,
                extra={"resolved": self.resolved} if stage == INFER else {},
                group=group,
            )
            for stage in group
        ]
        name = process_name(group)
        proc = self.mp.Process(target=stage_main.main, args=(setups,), name=f"edged-{name}")
        proc.start()
        self.processes[name] = proc
        self.liveness.started(name, time.monotonic())
        log.info("started %s stage (pid %d)", name, proc.pid)

    def _spawn_stage(self, stage: str, model: ModelDescriptor | None = None) -> None:
        """Start the process hosting ``stage`` unless it already runs (with a neighbour)."""
        if self._process_of(stage) not in self.processes:
            self._spawn(self.groups[self._process_of(stage)], model)

    def _rings_for(self, stage: str) -> dict[str, RingSpec]:
        needs = {
            CAPTURE: (FRAMES,),
            PREPROCESS: (FRAMES, TENSORS, OUTPUTS),
            INFER: (FRAMES, TENSORS, OUTPUTS),
            POSTPROCESS: (FRAMES, TENSORS, OUTPUTS),
            PUBLISH: (FRAMES, TENSORS, OUTPUTS),
        }[stage]
        return {name: self.ring_specs[name] for name in needs}

    def _wait_for(self, stage: str, kind: type[E]) -> E:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._drain_requested:
                raise StartupError("interrupted during start-up")
            if self.events.poll(100):
                received = self._recv_event()
                if received is None:
                    continue
                sender, event = received
                if isinstance(event, Fatal) and sender == stage:
                    raise StartupError(f"{stage} stage: {event.error}", event.bad_model)
                if sender == stage and isinstance(event, kind):
                    return event
                self.telemetry.handle(sender, event)
            elif not self.processes[self._process_of(stage)].is_alive():
                code = self.processes[self._process_of(stage)].exitcode
                raise StartupError(f"{stage} stage exited during start-up (exit code {code})")
        raise StartupError(f"{stage} stage not ready within {STARTUP_TIMEOUT_S:.0f}s")

    def _bind_events(self) -> None:
        self.events = self.ctx.socket(zmq.ROUTER)
        self.events.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # A command for a stage that is not connected (restarting) fails the send: dropped
        # silently, a swap would wait for an answer that never comes.
        self.events.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.bind(self.endpoints.supervisor)

    def start(self) -> None:
        self._prepare_runtime_dir()
        remove_stale_segments(SHM_PREFIX)
        start_resource_tracker()
        self._bind_events()
        tag = f"{SHM_PREFIX}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.ring_specs = ring_specs(self.config, tag)
        self.rings = [create_ring(spec) for spec in self.ring_specs.values()]
        self.metrics.registry.register(ProcessCollector(self.process_table))
        self.metrics.registry.register(PiHealthCollector())
        self.metrics.registry.register(HailoCollector(self._hailo_temperature))
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
        self._start_control()
        # Another subscriber of the detections, in its own process: a broker never stalls frames.
        self.mqtt = MqttBridgeProcess.start_for(
            self.config, self.publish_endpoint, self.control_endpoint, self.metrics.registry
        )

    def _start_control(self) -> None:
        cfg = self.config.control
        endpoint = cfg.endpoint or self.endpoints.control
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        if endpoint.startswith("tcp://"):
            self._auth = configure_curve_server(sock, cfg)
        old_umask = os.umask(0o177)  # the ipc file is created 0600 from the start
        try:
            sock.bind(endpoint)
        finally:
            os.umask(old_umask)
        secure_ipc(endpoint)
        self.control = sock
        self.control_endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        log.info("control socket on %s", self.control_endpoint)

    def _start_http(self) -> None:
        cfg = self.config.http
        if not cfg.enabled:
            return
        self.http = HttpServer(
            cfg.host, cfg.port, self.metrics.registry, self.health,
            self.readiness, limits=http_limits(cfg), allowed_hosts=cfg.allowed_hosts,
        )  # fmt: skip
        if self.config.preview.enabled:
            from edged.preview.routes import install_preview

            install_preview(self.http, self.config, self.runtime_dir, self.status,
                            self.config.control.endpoint or self.endpoints.control)  # fmt: skip
            log.info("live preview on http://%s:%d/preview", cfg.host, self.http.port)
        self.http.start()
        log.info("metrics on http://%s:%d/metrics", cfg.host, self.http.port)

    # -- probes ----------------------------------------------------------------------------------

    def process_table(self) -> list[tuple[str, int]]:
        table = [("supervisor", os.getpid())]
        table += [(name, p.pid) for name, p in self.processes.items() if p.pid and p.is_alive()]
        return table

    def _hailo_temperature(self) -> float | None:
        model = self.telemetry.state.model
        if model is None or model.backend != "hailo":
            return None  # never import HailoRT in the supervisor of a CPU-only daemon
        if self._hailo_reader is None:
            from edged.backends.hailo import HailoTemperatureReader

            # A Hailo variant is serving, so the device exists: no /dev/hailo* probe first.
            self._hailo_reader = HailoTemperatureReader(
                self.config.inference.hailo.device_id, device_nodes=lambda: ["serving"]
            )
        return self._hailo_reader.read()

    def health(self) -> tuple[bool, str]:
        dead = [name for name, p in self.processes.items() if not p.is_alive()]
        if dead:
            return False, f"stage(s) not running: {', '.join(dead)}"
        return True, f"supervisor and {len(self.processes)} stage processes running"

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
        poller.register(self.events, zmq.POLLIN)
        assert self.control is not None
        poller.register(self.control, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(100))
            if self.events in ready:
                self._drain_events()
            if self.control in ready:
                self._handle_control()
            self._service_requests()
            if self.mqtt is not None:
                self.mqtt.check()
            self._notify_systemd()
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
        if self._deferred_reloads and not self.swaps.in_progress:
            self.reload(self._deferred_reloads.popleft(), deferred=True)

    _drained = False
    _source_finished = False
    mqtt: MqttBridgeProcess | None = None

    def _recv_event(self) -> tuple[str, StageEvent] | None:
        """(sending stage, its event); None when nothing is waiting."""
        while True:
            try:
                identity, payload = self.events.recv_multipart(zmq.NOBLOCK)
            except (zmq.Again, ValueError):  # ValueError: not an (identity, payload) pair
                return None
            stage = identity.decode(errors="replace")
            process = self.process_of_stage.get(stage)
            if process is None:  # the DEALER identity is the stage name: not one of ours
                continue
            try:
                event = decode_event(payload)
            except MessageError as exc:
                log.error("%s stage: event refused: %s", stage, exc)
                continue
            self.liveness.heard(process, time.monotonic())
            return stage, event

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
        now = time.monotonic()
        for name, proc in list(self.processes.items()):
            if proc.is_alive():
                continue
            restart = self.restarts.setdefault(name, RestartPolicy(self.config.pipeline))
            if restart.due is None:
                cause = exit_cause(proc.exitcode)
                if not restart.allow(now):
                    log.error(
                        "%s stage died (%s) %d times within %.0fs; giving up",
                        name,
                        cause,
                        restart.count_in_window(now),
                        self.config.pipeline.restart_window_s,
                    )
                    self.exit_code = 1
                    return True
                delay = restart.schedule(now)
                log.error("%s stage died (%s); restarting in %.1fs", name, cause, delay)
                if INFER in self.groups[name]:
                    self.swaps.cancel("inference stage restarted during the swap")
            elif now >= restart.due:
                restart.due = None
                for stage in self.groups[name]:  # every stage of the process restarted
                    self.metrics.stage_restarts.labels(stage).inc()
                self._restart(name)
        return False

    def _restart(self, name: str) -> None:
        """Respawn a stage process and take back the ring slots its death stranded."""
        proc = self.processes[name]
        proc.join(0)
        group = self.groups[name]
        self._spawn(group, self.telemetry.state.model)
        stranded = {ring for stage in group for ring in RECLAIM_ON_RESTART[stage]}
        for ring in sorted(stranded):
            if RING_OWNER[ring] not in group:  # a ring of the new process starts out free
                self._send(RING_OWNER[ring], Reclaim(ring))

    def _send(self, stage: str, command: Command, say_if_lost: bool = True) -> bool:
        """True when ``command`` is on its way to ``stage``: the events socket refuses a stage
        that is not connected (ROUTER_MANDATORY) instead of dropping the command silently."""
        if getattr(self, "events", None) is None or self.events.closed:
            return False
        try:
            self.events.send_multipart((stage.encode(), encode(command)), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if not say_if_lost:
                return False
            log.warning("%s for the %s stage not sent: %s", type(command).__name__, stage,
                        "not connected" if exc.errno == zmq.EHOSTUNREACH else exc)  # fmt: skip
            return False
        return True

    def _answer_waiting_clients(self, why: str) -> None:
        """Clients waiting for a swap or a deferred reload hear ``why`` (not silence)."""
        self.swaps.cancel(why)
        while self._deferred_reloads:
            self._reply(self._deferred_reloads.popleft(), error_reply(why))

    def _begin_drain(self) -> None:
        self.notifier.stopping()
        self._draining_since = time.monotonic()
        self._answer_waiting_clients(SHUTTING_DOWN)
        if self._source_finished:  # nothing in flight: the end already went through
            self._drained = True
            return
        log.info("stopping: draining frames in flight")
        self._send(CAPTURE, Drain())

    def _notify_systemd(self) -> None:
        state = self.telemetry.state
        now = time.monotonic()
        if not self._published_ready:
            # From the daemon's own start, as systemd counts TimeoutStartSec: model loading can
            # take a good part of it before the pipeline serves.
            in_service = now - self.started_at
            if state.published > 0:
                log.info("ready: first frame published")
            elif in_service >= self.config.runtime.ready_without_frames_s:
                # Rather than let systemd time the start out and restart in a loop: the daemon
                # itself keeps retrying the source, and STATUS says why no frame came.
                log.warning("no frame published %.0f s after start (%s); telling systemd the "
                            "daemon is up, it keeps retrying", in_service,
                            self.readiness()[1])  # fmt: skip
            else:
                return
            self._published_ready = True
            self.notifier.ready(self.status_line())
        interval = self.notifier.watchdog_interval()
        if interval and now - self._last_watchdog >= interval:
            # Pings vouch that every stage process still turns its loop (liveness), not that
            # frames flow: a source that is down or ended is /readyz's business, and restarting
            # the daemon would not bring it back. A stuck process stops them.
            running = [name for name, proc in self.processes.items() if proc.is_alive()]
            stuck = self.liveness.stuck(running, now)
            if not stuck:
                self.notifier.watchdog()
                self._last_watchdog = now
                self._stuck_said = False
            elif not self._stuck_said:  # at the first ping withheld, before systemd acts
                log.error("no report from the %s process(es) for %.0f s: watchdog pings stop",
                          ", ".join(stuck), self.liveness.silence_s)  # fmt: skip
                self._stuck_said = True
        if now - self._last_status >= 5.0 and self._published_ready:
            self._last_status = now
            self.notifier.status(self.status_line())

    def readiness(self) -> tuple[bool, str]:
        """/readyz's verdict. Frames are reported with the publish stage's counters, up to one
        ``stats_interval_s`` after they went out: that much is added to the allowed age."""
        slack = self.config.pipeline.stats_interval_s
        return self.telemetry.ready(self.config.http.ready_max_age_s + slack)

    def status_line(self) -> str:
        s = self.telemetry.state
        model = s.model
        variant = f"{model.name}/{model.variant}" if model else "no model"
        line = f"{s.fps():.1f} fps, {variant}, {s.published} frames published"
        if not s.source_connected and not s.ended:
            line += f"; source: {s.source_error or 'connecting'}"
        return line

    # -- control ---------------------------------------------------------------------------------

    def _handle_control(self) -> None:
        assert self.control is not None
        while True:
            try:
                parts = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 3 or parts[1] != b"":
                continue  # not a REQ envelope: nothing sensible to answer
            identity, body = parts[0], parts[2]
            try:
                request = parse_request(body)
            except ProtocolError as exc:
                self._reply(identity, error_reply(str(exc)))
                continue
            try:
                if self._draining_since is not None and request.command != "status":
                    self._reply(identity, error_reply(SHUTTING_DOWN))
                elif request.command == "status":
                    self._reply(identity, reply(True, **self.status()))
                elif request.command == "swap":
                    assert request.variant is not None
                    self.swap(request.variant, identity)
                elif request.command == "reload":
                    self.reload(identity)
            except Exception as exc:  # one bad request must never take the daemon down
                log.exception("control request %s failed", request.command)
                self._reply(identity, error_reply(f"internal error: {exc}"))

    def _reply(self, identity: bytes | None, body: bytes) -> None:
        if identity is None or self.control is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self.control.send_multipart((identity, b"", body), zmq.NOBLOCK)

    def status(self) -> dict[str, Any]:
        s = self.telemetry.state
        model = s.model
        variants: list[str] = []
        if self.config.model.manifest and self.resolved.manifest_path:
            with contextlib.suppress(ModelError):
                variants = list(load_manifest(self.resolved.manifest_path).variants)
        return {
            "camera_id": self.config.camera_id,
            "model": None if model is None else {
                "name": model.name, "variant": model.variant, "backend": model.backend,
                "precision": model.precision, "path": model.path,
                "input": [model.input_width, model.input_height],
                "output_layout": model.output_layout,
            },
            "variants": variants,
            "swap_in_progress": self.swaps.in_progress,
            "fps": round(s.fps(), 2),
            "frames_published": s.published,
            "last_seq": s.last_published_seq,
            "source": {**s.source, "connected": s.source_connected, "ended": s.ended,
                       "mode": self.mode},
            "stages": self._stage_status(),
            "publish_endpoint": getattr(self, "publish_endpoint", None),
            "subscribers": s.subscribers,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
        }  # fmt: skip

    def _stage_status(self) -> dict[str, dict[str, Any]]:
        """Per stage: its process (shared with its neighbours in the fused layout)."""
        status = {}
        for stage in STAGE_ORDER:
            name = self._process_of(stage)
            proc = self.processes.get(name)
            if proc is not None:
                status[stage] = {"pid": proc.pid, "alive": proc.is_alive(), "process": name}
        return status

    def swap(self, variant: str, identity: bytes | None, config: EdgedConfig | None = None) -> None:
        """Start a swap (a control request, or a reload's new model section)."""
        proc = self.processes.get(self._process_of(INFER))
        if proc is None or not proc.is_alive():  # dead, or waiting for its restart
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
            self._reply(identity, error_reply("no config file to reload (started without one)"))
            return
        started = self._published_ready  # before READY=1, a reload must not send it early
        if self.swaps.in_progress:
            if identity is None and None in self._deferred_reloads:
                return  # a signal's reload already waits: it reads the file then
            if len(self._deferred_reloads) >= MAX_DEFERRED_RELOADS:
                self._reply(identity, error_reply("too many reloads waiting for the swap in "
                                                  "progress; retry when it ended"))  # fmt: skip
                return
            log.info("reload requested during a swap: it runs when the swap ends")
            self._deferred_reloads.append(identity)
            if started:
                self.notifier.reloading()
            return
        if started and not deferred:  # a deferred one said RELOADING=1 when it was asked for
            self.notifier.reloading()
        try:
            new = load_config(self.config_path)
            if self.overrides:
                new = apply_overrides(new, self.overrides)
            pipeline_mode(new, str(self.config_path))
        except ConfigError as exc:
            log.error("reload refused, keeping the running config:\n%s", exc)
            self._reply(identity, error_reply(str(exc)))
            if started:
                self.notifier.ready(self.status_line())
            return
        changed = [
            name for name in type(new).model_fields if getattr(new, name) != getattr(self.config,
                                                                                      name)
        ]  # fmt: skip
        later = [n for n in changed if n != "model"]
        if later:
            log.warning("reload: changes to %s take effect after a restart", ", ".join(later))
        log.info("config reloaded from %s", self.config_path)
        if "model" in changed:
            self.swap(new.model.variant, identity, new)
        else:
            self._reply(identity, reply(True, changed=changed, needs_restart=later,
                                        active=self.swaps.active_variant()))  # fmt: skip
        if started:
            self.notifier.ready(self.status_line())

    # -- shutdown --------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self._answer_waiting_clients(SHUTTING_DOWN)  # before the control socket closes
        for stage in STAGE_ORDER:
            if self._process_of(stage) in self.processes:
                self._send(stage, Stop(), say_if_lost=False)  # an exited stage needs none
        deadline = time.monotonic() + 5.0
        for name, proc in self.processes.items():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("%s stage did not stop; killing it", name)
                proc.kill()
                proc.join(2.0)
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.http is not None:
            self.http.stop()
        if self._auth is not None:
            self._auth.stop()
        for sock in (self.control, getattr(self, "events", None)):
            if sock is not None:
                sock.close(0)
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
