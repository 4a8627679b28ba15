"""The preview's HTTP routes on the supervisor's server.

- ``GET /preview``              the page (package data, read once at start; no external assets)
- ``GET /preview.mjpg``         multipart MJPEG, until the client leaves
- ``GET /preview.jpg``          the next frame as one JPEG
- ``GET /preview/status.json``  variant, variants, fps, recent per-stage latency, the cameras
- ``POST /preview/swap``        ``{"variant": "static"}`` → the control socket, exactly like
  ``edged ctl swap`` (only with ``preview.control: true``)

With several cameras those show the first; ``/preview/<id>``, ``/preview/<id>.mjpg``,
``/preview/<id>.jpg`` and ``/preview/<id>/status.json`` show camera ``<id>`` (routes made from the
config's camera ids, so a request never names a topic the config does not have).

Frames come from the publish stage over a private ipc socket: each MJPEG viewer is a ZeroMQ
subscriber of its own, so the publish stage encodes only while someone watches and a slow
viewer only loses its own frames. Nothing here reads a file named by a request.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from math import ceil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zmq
from prometheus_client import CollectorRegistry

from edged import control
from edged.http_server import HttpServer, Request, Response, Stream
from edged.preview import mjpeg
from edged.preview.config import PreviewConfig
from edged.preview.latency import LatencyWindow
from edged.preview.wire import decode_frame, frames_topic, private_endpoint
from edged.publish.subscriber import newest_queued

log = logging.getLogger(__name__)

POLL_MS = 500  # how often a stream checks for shutdown while no frame comes
KEEPALIVE_S = 2.0  # idle streams repeat the last frame: a vanished client is noticed
SNAPSHOT_TIMEOUT_S = 3.0
STATUS_CACHE_S = 0.5
SWAP_TIMEOUT_S = 300.0
# Swaps from the page: a burst of SWAP_BURST, then one per SWAP_REFILL_S, one at a time. Each
# swap loads a model (seconds of CPU on a Pi); a page must not be able to keep it doing that.
SWAP_BURST = 3
SWAP_REFILL_S = 5.0
JSON = "application/json"
# What the page may know of the source: not its URI (it may hold credentials).
SOURCE_FIELDS = ("width", "height", "fps", "kind", "mode", "connected", "ended")


class TokenBucket:
    """``capacity`` tokens, one more every ``refill_s`` seconds; :meth:`take` spends one."""

    def __init__(self, capacity: int, refill_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.capacity, self.refill_s, self.clock = capacity, refill_s, clock
        self.tokens = float(capacity)
        self.at = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0.0 when a token was spent, else the seconds until one is there."""
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) / self.refill_s)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) * self.refill_s


GONE: Response = (404, "text/plain", b"no such camera (not in the config now)\n")


def _json(status: int, data: dict[str, Any]) -> Response:
    return status, JSON, json.dumps(data).encode() + b"\n"


def load_page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy (the inline script allowed by its hash)."""
    page = resources.files("edged.preview").joinpath("page.html").read_bytes()
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.S)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts
    )
    csp = (
        "default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
        f"script-src {hashes}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return page, csp


class PreviewRoutes:
    def __init__(
        self,
        cfg: PreviewConfig,
        camera_ids: str | Sequence[str],
        frames_endpoint: str,
        status: Callable[[], dict[str, Any]],
        control_endpoint: str | None,
        registry: CollectorRegistry,
        ctx: zmq.Context | None = None,
    ) -> None:
        self.cfg = cfg
        self.camera_ids = [camera_ids] if isinstance(camera_ids, str) else list(camera_ids)
        self.frames_endpoint = frames_endpoint
        self._status = status
        self.control_endpoint = control_endpoint
        self.latency = LatencyWindow(registry)
        self.ctx = ctx or zmq.Context.instance()
        self.page, self.csp = load_page()
        self._viewers = threading.BoundedSemaphore(cfg.max_viewers)
        self.viewers = 0
        self._cache: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self.swaps = TokenBucket(SWAP_BURST, SWAP_REFILL_S)
        self._swapping = threading.Lock()  # one swap from the page at a time

    def install(self, http: HttpServer) -> None:
        # None: the first camera at the time of the request (a reload may change it).
        http.add_route("/preview", self.page_route)
        http.add_stream("/preview.mjpg", functools.partial(self.mjpeg_route, camera_id=None))
        http.add_route("/preview.jpg", functools.partial(self.snapshot_route, None))
        http.add_route("/preview/status.json", functools.partial(self.status_route, None))
        http.add_request_route("/preview/swap", self.swap_route)
        self._http = http
        self._installed: set[str] = set()
        self.use_cameras(self.camera_ids)

    def use_cameras(self, camera_ids: Sequence[str]) -> None:
        """The cameras now configured (a reload added or removed some): routes for the new
        ones; a removed one's answer 404 (the server's routes are only ever added)."""
        self.camera_ids = list(camera_ids)
        for camera_id in self.camera_ids:
            if camera_id in self._installed:
                continue
            base = f"/preview/{camera_id}"
            self._http.add_route(base, functools.partial(self.page_route, camera_id))
            mjpeg_route = functools.partial(self.mjpeg_route, camera_id=camera_id)
            self._http.add_stream(f"{base}.mjpg", mjpeg_route)
            self._http.add_route(f"{base}.jpg", functools.partial(self.snapshot_route, camera_id))
            self._http.add_route(f"{base}/status.json",
                                 functools.partial(self.status_route, camera_id))  # fmt: skip
            self._installed.add(camera_id)

    def _camera(self, camera_id: str | None) -> str | None:
        """``camera_id`` if configured now (None: the first camera); None when it is gone."""
        if camera_id is None:
            return self.camera_ids[0] if self.camera_ids else None
        return camera_id if camera_id in self.camera_ids else None

    # -- frames ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _subscription(self, camera_id: str) -> Iterator[zmq.Socket]:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 2)  # keep only the newest frames; viewers never lag behind
        # The topic is a prefix: "frames.cam1" would also match cam10's frames, so a viewer
        # checks each header's camera (see _newest).
        sock.setsockopt(zmq.SUBSCRIBE, frames_topic(camera_id))
        sock.connect(self.frames_endpoint)
        try:
            yield sock
        finally:
            sock.close(0)

    @staticmethod
    def _newest(sock: zmq.Socket, topic: bytes) -> tuple[dict[str, Any], bytes] | None:
        """The newest frame waiting on ``topic`` exactly (None: only another camera's, whose
        topic ``topic`` is a prefix of)."""
        parts, _skipped = newest_queued(sock, sock.recv_multipart(), topic)
        return decode_frame(parts) if parts else None

    def page_route(self, camera_id: str | None = None) -> Response:
        if self._camera(camera_id) is None:
            return GONE
        headers = {
            "Content-Security-Policy": self.csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        return 200, "text/html; charset=utf-8", self.page, headers

    def mjpeg_route(self, request: Request, stream: Stream, camera_id: str | None) -> None:
        camera_id = self._camera(camera_id)
        if camera_id is None:
            stream.start(404, "text/plain")
            stream.write(GONE[2])
            return
        if not self._viewers.acquire(blocking=False):
            stream.start(503, "text/plain", {"Retry-After": "5"})
            stream.write(f"at most {self.cfg.max_viewers} preview viewers (preview.max_viewers)\n"
                         .encode())  # fmt: skip
            return
        with self._lock:
            self.viewers += 1
        try:
            with self._subscription(camera_id) as sub:
                self._pump(sub, stream, frames_topic(camera_id))
        finally:
            with self._lock:
                self.viewers -= 1
            self._viewers.release()

    def _pump(self, sub: zmq.Socket, stream: Stream, topic: bytes) -> None:
        if not stream.start(200, mjpeg.CONTENT_TYPE, {"X-Content-Type-Options": "nosniff"}):
            return
        if not stream.write(mjpeg.opening()):
            return
        last: bytes | None = None
        last_write = time.monotonic()
        while not stream.stopping:
            if sub.poll(POLL_MS):
                newest = self._newest(sub, topic)
                if newest is None:
                    continue
                header, jpeg = newest
                last = mjpeg.part(jpeg, header.get("seq"))
            elif last is None:  # nothing to repeat yet: notice a viewer who left all the same
                if stream.client_gone():
                    return
                continue
            elif time.monotonic() - last_write < KEEPALIVE_S:
                continue
            if not stream.write(last):
                return
            last_write = time.monotonic()

    def snapshot_route(self, camera_id: str | None) -> Response:
        camera_id = self._camera(camera_id)
        if camera_id is None:
            return GONE
        topic = frames_topic(camera_id)
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
        with self._subscription(camera_id) as sub:
            while (left := deadline - time.monotonic()) > 0 and sub.poll(int(left * 1000) + 1):
                if (newest := self._newest(sub, topic)) is not None:
                    header, jpeg = newest
                    return 200, "image/jpeg", jpeg, {"X-Edged-Seq": str(header.get("seq"))}
        return 503, "text/plain", b"no preview frame yet (is the pipeline running?)\n"

    # -- status ----------------------------------------------------------------------------------

    def _supervisor_status(self) -> dict[str, Any]:
        # One supervisor status() per interval however many pages poll.
        with self._lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] >= STATUS_CACHE_S:
                self._cache = (now, self._status())
            return self._cache[1]

    def status(self, camera_id: str | None = None) -> dict[str, Any]:
        """What the page shows of ``camera_id`` (default: the first camera)."""
        camera_id = camera_id or self.camera_ids[0]
        s = self._supervisor_status()
        model = s.get("model") or {}
        # Several cameras: the supervisor's per-camera entry; one: the top level is the camera.
        camera = (s.get("cameras") or {}).get(camera_id) or s
        source = camera.get("source") or {}
        return {
            "camera_id": camera_id,
            "cameras": self.camera_ids,
            # Not the model's file path, nor the source URI (it may hold credentials).
            "model": {k: model.get(k) for k in ("name", "variant", "backend", "precision")},
            "variants": list(s.get("variants") or []),
            "control": self.cfg.control,
            "swap_in_progress": bool(s.get("swap_in_progress")),
            "fps": camera.get("fps", 0.0),
            "frames_published": camera.get("frames_published", 0),
            "last_seq": camera.get("last_seq"),
            "source": {k: source.get(k) for k in SOURCE_FIELDS},
            "latency_ms": self.latency.read(),
            "preview": {"fps": self.cfg.fps, "width": self.cfg.width, "viewers": self.viewers},
        }

    def status_route(self, camera_id: str | None) -> Response:
        camera_id = self._camera(camera_id)
        if camera_id is None:
            return GONE
        return _json(200, self.status(camera_id))

    # -- control ---------------------------------------------------------------------------------

    def swap_route(self, request: Request) -> Response:
        if not self.cfg.control:
            return _json(403, {"ok": False, "error": "swapping from the preview is off "
                                                     "(set preview.control: true)"})  # fmt: skip
        # A cross-site form cannot send application/json, and a cross-site fetch with it needs
        # a CORS preflight this server never grants: only same-origin pages get here.
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type != JSON:
            return _json(415, {"ok": False, "error": "send application/json"})
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.headers.get("Host"):
            return _json(403, {"ok": False, "error": "cross-origin request refused"})
        try:
            variant = json.loads(request.body).get("variant")
        except (ValueError, AttributeError):
            variant = None
        if not isinstance(variant, str) or not 0 < len(variant) <= 64:
            return _json(400, {"ok": False, "error": 'expected {"variant": "<name>"}'})
        if not self.control_endpoint or not self.control_endpoint.startswith("ipc://"):
            return _json(501, {"ok": False, "error": "swapping from the preview needs the "
                                                     "local ipc control socket"})  # fmt: skip
        if not self._swapping.acquire(blocking=False):
            return _json(409, {"ok": False, "error": "a swap from the page is in progress"})
        try:
            wait = self.swaps.take()
            if wait:
                error = f"too many swaps from the page: try again in {ceil(wait)} s"
                status, kind, body = _json(429, {"ok": False, "error": error})
                return status, kind, body, {"Retry-After": str(ceil(wait))}
            log.info("preview: swap to %s requested by %s", variant, request.client)
            try:
                reply = control.call(self.control_endpoint, "swap", variant, SWAP_TIMEOUT_S)
            except TimeoutError as exc:
                return _json(504, {"ok": False, "error": str(exc)})
            except control.NotRunning as exc:
                return _json(503, {"ok": False, "error": str(exc)})
        finally:
            self._swapping.release()
        self._cache = None  # the next status shows the outcome
        return _json(200 if reply.get("ok") else 409, reply)


def install_preview(
    http: HttpServer,
    config: Any,
    runtime_dir: Path | str,
    status: Callable[[], dict[str, Any]],
    control_endpoint: str | None,
) -> PreviewRoutes:
    """Add the preview routes to the supervisor's HTTP server (``config``: an EdgedConfig)."""
    cfg: PreviewConfig = getattr(config, "preview", None) or PreviewConfig()
    camera_ids = [camera.id for camera in config.camera_list()]
    routes = PreviewRoutes(cfg, camera_ids, private_endpoint(runtime_dir), status,
                           control_endpoint, http.registry)  # fmt: skip
    routes.install(http)
    return routes
