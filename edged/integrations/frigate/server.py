"""``edged serve-detector``: answer Frigate's zmq detector requests with an edged model.

One thread answers requests in arrival order on a ROUTER socket (a REQ client such as Frigate's
sees plain REQ/REP), so it can time-stamp requests as they come in and answer a request that
already waited longer than Frigate's timeout with an empty reply at once (counted ``expired``)
instead of spending an inference on a result nobody reads any more. The same thread answers
the control protocol of ``edged ctl`` (status, swap); a swap loads the new variant on a worker
thread while the old one keeps answering, and the switch happens between two requests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from prometheus_client import Counter, Histogram

from edged.backends import Backend, BackendBroken, BackendError
from edged.config import EdgedConfig, default_runtime_dir
from edged.control import ProtocolError, error_reply, reply, waiting_requests
from edged.integrations.frigate.engine import Engine
from edged.integrations.frigate.protocol import EMPTY_REPLY, RequestError, encode_reply
from edged.integrations.frigate.protocol import parse_request as parse_detect
from edged.log_throttle import LogThrottle
from edged.metrics import LATENCY_BUCKETS, Metrics
from edged.models import ModelError, ResolvedVariant, load_manifest, resolve_from_config
from edged.pipeline.messages import ModelDescriptor
from edged.pipeline.model_loader import load_model
from edged.pipeline.stages.postprocess import decode_params

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "late", "expired", "error")
MAX_PENDING = 64  # requests taken off the socket ahead of the one being answered ...
MAX_PENDING_BYTES = 64 * 2**20  # ... and their bytes; the rest waits in ZeroMQ (4 per peer)


class DetectorMetrics:
    """The camera metrics that apply (stage latency, frames, detections, model, swaps) plus
    the requests by outcome and their time from arrival to reply."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.edged = metrics or Metrics()
        registry = self.edged.registry
        self.requests = Counter(
            "edged_detector_requests",
            "Frigate detector requests by outcome: ok; late (answered after detector.timeout_ms, "
            "Frigate had most likely given up); expired (older than the timeout when their turn "
            "came: empty reply, no inference); error (malformed, or the model failed: empty "
            "reply).",
            ["outcome"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "edged_detector_request_seconds",
            "Time from a request's arrival to its reply (queueing included).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.requests.labels(outcome)


@dataclass
class _Pending:
    arrived: float
    envelope: list[bytes]  # routing identity [+ empty delimiter of a REQ client]
    body: list[bytes]


def split_envelope(parts: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """ROUTER frames → (envelope to reply with, request frames). A REQ client's request has an
    empty delimiter after its identity; a DEALER's may not."""
    if len(parts) >= 2 and parts[1] == b"":
        return parts[:2], parts[2:]
    return parts[:1], parts[1:]


@dataclass
class _Swap:
    resolved: ResolvedVariant
    identity: bytes | None  # control client waiting for the result; None: a reload
    started: float
    future: Future[tuple[Backend, ModelDescriptor]]


class DetectorServer:
    def __init__(self, config: EdgedConfig, metrics: DetectorMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.config = config
        self.metrics = metrics or DetectorMetrics()
        self.clock = clock
        runtime_dir = Path(config.runtime.runtime_dir or default_runtime_dir())
        self.endpoint = config.detector.endpoint or f"ipc://{runtime_dir / 'detector.sock'}"
        self.control_endpoint = config.detector.control_endpoint or (
            f"ipc://{runtime_dir / 'detector-control.sock'}"
        )
        self.runtime_dir = runtime_dir
        self.timeout_s = config.detector.timeout_ms / 1000
        self.params = decode_params(config.postprocess)
        self.ctx = zmq.Context.instance()
        self.sock: zmq.Socket | None = None
        self.control: zmq.Socket | None = None
        self.engine: Engine | None = None
        self.resolved: ResolvedVariant = resolve_from_config(config.model)
        self.generation = 0
        self.swap: _Swap | None = None
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")
        self.pending: deque[_Pending] = deque()
        self.pending_bytes = 0
        self.throttle = LogThrottle()
        self.counts = dict.fromkeys(OUTCOMES, 0)  # for status; the metrics have the same

    # -- start / stop ----------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model, then bind (so a request never arrives before there is a model)."""
        backend, model = self._load(self.resolved)
        self._adopt(backend, model)
        self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # RCVHWM 4: a REQ peer has one request out at a time.
        max_bytes = int(self.config.detector.max_request_mb * 2**20)
        self.sock = self._bind(self.endpoint, {zmq.MAXMSGSIZE: max_bytes, zmq.RCVHWM: 4})
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.control = self._bind(self.control_endpoint, {zmq.MAXMSGSIZE: 1 << 20})
        log.info("answering Frigate detector requests on %s (control: %s)", self.endpoint,
                 self.control_endpoint)  # fmt: skip

    def _bind(self, endpoint: str, options: dict[int, int]) -> zmq.Socket:
        """A ROUTER bound to ``endpoint``; ``options`` set first (connections take a
        listener's options from when it was bound)."""
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        for option, value in options.items():
            sock.setsockopt(option, value)
        if endpoint.startswith("ipc://"):
            with contextlib.suppress(FileNotFoundError):  # left by a daemon that died
                os.unlink(endpoint[len("ipc://") :])
        old_umask = os.umask(0o177)  # an ipc socket file is created 0600 from the start
        try:
            sock.bind(endpoint)
        finally:
            os.umask(old_umask)
        return sock

    def close(self) -> None:
        if self.swap is not None:
            self.swap.future.cancel()
        self.loader.shutdown(wait=True)
        if self.swap is not None and self.swap.future.done() and not self.swap.future.cancelled():
            with contextlib.suppress(Exception):
                self.swap.future.result()[0].close()
        for sock in (self.sock, self.control):
            if sock is not None:
                sock.close(0)
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    # -- model -----------------------------------------------------------------------------------

    def _load(self, resolved: ResolvedVariant) -> tuple[Backend, ModelDescriptor]:
        self.generation += 1
        return load_model(resolved, self.config.inference, self.config.model.warmup_runs,
                          self.generation)  # fmt: skip

    def _adopt(self, backend: Backend, model: ModelDescriptor) -> None:
        old = self.engine
        self.engine = Engine(backend, model, self.params, self.config.detector)
        if old is not None:
            old.close()
        self.metrics.edged.set_active_model(model.name, model.variant, model.backend,
                                            model.precision)  # fmt: skip
        self.metrics.edged.retire_labels(model.labels)
        self.metrics.edged.prepare_labels(model.labels)
        log.info("serving %s (%s, %s, input %dx%d)", model.key, model.backend, model.precision,
                 model.input_width, model.input_height)  # fmt: skip

    def request_swap(self, variant: str, identity: bytes | None) -> None:
        """Load ``variant`` beside the active model (``identity`` None: a reload after the
        backend broke, nobody waits for the result)."""
        if self.swap is not None:
            busy = f"a swap to {self.swap.resolved.variant!r} is in progress"
            self._reply_control(identity, error_reply(busy))
            return
        try:
            resolved = resolve_from_config(self.config.model, variant)
        except ModelError as exc:
            self.metrics.edged.model_swaps.labels("refused").inc()
            self._reply_control(identity, error_reply(str(exc)))
            return
        self.swap = _Swap(
            resolved, identity, self.clock(), self.loader.submit(self._load, resolved)
        )

    def _finish_swap(self) -> None:
        swap = self.swap
        if swap is None or not swap.future.done():
            return
        self.swap = None
        try:
            backend, model = swap.future.result()
        except (BackendError, OSError) as exc:
            log.error("loading %s failed: %s", swap.resolved.variant, exc)
            self.metrics.edged.model_swaps.labels("refused").inc()
            self._reply_control(swap.identity, error_reply(f"{swap.resolved.variant}: {exc}"))
            return
        self._adopt(backend, model)
        self.resolved = swap.resolved
        seconds = self.clock() - swap.started
        if swap.identity is not None:
            self.metrics.edged.model_swaps.labels("ok").inc()
            self.metrics.edged.model_swap_duration.observe(seconds)
        self._reply_control(swap.identity, reply(True, active=model.variant,
                                                 seconds=round(seconds, 3)))  # fmt: skip

    # -- serving ---------------------------------------------------------------------------------

    def serve(self, stop: threading.Event, on_turn: Callable[[], None] | None = None) -> None:
        """Answer requests until ``stop`` is set; ``on_turn`` runs every turn of the loop (at
        least every 100 ms), e.g. systemd's watchdog ping."""
        assert self.sock is not None and self.control is not None
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        while not stop.is_set():
            if on_turn is not None:
                on_turn()
            self._finish_swap()
            events = dict(poller.poll(0 if self.pending else 100))
            if self.control in events:
                self._handle_control()
            self._receive()
            if self.pending:
                request = self.pending.popleft()
                self.pending_bytes -= sum(len(part) for part in request.body)
                self._answer(request)

    def _receive(self) -> None:
        """Take what is queued off the socket, time-stamped now (at most one inference late)."""
        assert self.sock is not None
        while len(self.pending) < MAX_PENDING and self.pending_bytes < MAX_PENDING_BYTES:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            envelope, body = split_envelope(parts)
            self.pending.append(_Pending(self.clock(), envelope, body))
            self.pending_bytes += sum(len(part) for part in body)

    def _answer(self, request: _Pending) -> None:
        outcome, payload = self._outcome(request)
        now = self.clock()
        if outcome == "ok" and now - request.arrived > self.timeout_s:
            outcome = "late"
        self.metrics.requests.labels(outcome).inc()
        self.counts[outcome] += 1
        self.metrics.request_seconds.observe(now - request.arrived)
        assert self.sock is not None
        with contextlib.suppress(zmq.ZMQError):  # the client is gone: nothing to tell it
            self.sock.send_multipart([*request.envelope, payload], zmq.NOBLOCK)

    def _outcome(self, request: _Pending) -> tuple[str, bytes]:
        if self.clock() - request.arrived > self.timeout_s:
            return "expired", EMPTY_REPLY
        engine = self.engine
        assert engine is not None
        try:
            header, tensor = parse_detect(request.body)
        except RequestError as exc:
            self._warn("request", "refused a request: %s", exc)
            return "error", EMPTY_REPLY
        try:
            detections, times = engine.detect(header, tensor)
        except BackendBroken as exc:
            self._warn("broken", "the backend broke (%s); loading the model again", exc)
            self.metrics.edged.frames.labels("infer", "error", "").inc()
            if self.swap is None:
                self.request_swap(engine.model.variant, None)
            return "error", EMPTY_REPLY
        except Exception as exc:  # one request must never take the detector down
            self._warn("infer", "request failed: %r", exc)
            self.metrics.edged.frames.labels("infer", "error", "").inc()
            return "error", EMPTY_REPLY
        edged = self.metrics.edged
        edged.frames.labels("infer", "ok", "").inc()
        for stage, seconds in (("preprocess", times.preprocess), ("infer", times.infer),
                               ("postprocess", times.postprocess)):  # fmt: skip
            edged.stage_latency.labels(stage, "").observe(seconds)
        labels = engine.model.labels
        for class_id, score in zip(detections.class_ids.tolist(), detections.scores.tolist(),
                                   strict=True):  # fmt: skip
            edged.count_detection(labels[class_id] if class_id < len(labels) else str(class_id),
                                  score)  # fmt: skip
        return "ok", encode_reply(detections, header.width, header.height)

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        suffix = self.throttle.allow(kind)
        if suffix is not None:
            log.warning(message + "%s", *args, suffix)

    # -- control ---------------------------------------------------------------------------------

    def _handle_control(self) -> None:
        assert self.control is not None
        for identity, request in waiting_requests(self.control):
            if isinstance(request, ProtocolError):
                self._reply_control(identity, error_reply(str(request)))
            elif request.command == "status":
                self._reply_control(identity, reply(True, **self.status()))
            elif request.command == "swap":
                assert request.variant is not None
                self.request_swap(request.variant, identity)
            else:
                self._reply_control(identity, error_reply(
                    f"{request.command} is not served by edged serve-detector"))  # fmt: skip

    def _reply_control(self, identity: bytes | None, body: bytes) -> None:
        if identity is None or self.control is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self.control.send_multipart((identity, b"", body), zmq.NOBLOCK)

    def status_line(self) -> str:
        model = self.engine.model if self.engine else None
        serving = f"serving {model.name}/{model.variant}" if model else "no model"
        done = ", ".join(f"{n} {o}" for o, n in self.counts.items() if n)
        return f"{serving} on {self.endpoint}; requests: {done or 'none yet'}"

    def status(self) -> dict[str, Any]:
        model = self.engine.model if self.engine else None
        variants: list[str] = []
        if self.config.model.manifest and self.resolved.manifest_path:
            with contextlib.suppress(ModelError):
                variants = list(load_manifest(self.resolved.manifest_path).variants)
        return {
            "endpoint": self.endpoint,
            "model": None if model is None else {
                "name": model.name, "variant": model.variant, "backend": model.backend,
                "precision": model.precision, "input": [model.input_width, model.input_height],
                "labels": len(model.labels),
            },
            "variants": variants,
            "swap_in_progress": self.swap is not None,
            "requests": dict(self.counts),
            "timeout_ms": self.config.detector.timeout_ms,
        }  # fmt: skip
