"""The supervisor's HTTP endpoint: /metrics, /healthz, /readyz (and routes added by features).

The stdlib's ``BaseHTTPRequestHandler`` parses and answers, behind :mod:`edged.http_intake`,
which accepts connections and reads whole requests within limits (connections, a deadline for
the whole request, head size) on one thread: no framework to keep patched on a Pi, and
prometheus_client renders the exposition. Handlers only read state; they never touch files.

Three kinds of route:

- :data:`Route` — a GET answered from memory: ``() -> (status, content type, body[, headers])``;
- :data:`RequestRoute` — sees the request (method, query, headers, a small body): for POSTs;
- :data:`StreamRoute` — writes a response that never ends by itself (multipart MJPEG) through a
  :class:`Stream`, until the client goes away or the server stops. Each stream runs on its own
  daemon thread, so an open stream never blocks :meth:`HttpServer.stop`.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import logging
import resource
import select
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from edged.http_intake import Intake, IntakeLimits

log = logging.getLogger(__name__)

MAX_BODY_BYTES = IntakeLimits.max_body_bytes
# Sending: a client that stops reading cannot hold a handler thread (or a stream) longer than
# this per write. Receiving is the intake's business (a deadline for the whole request).
SOCKET_TIMEOUT_S = 30.0

# A probe returns (healthy, reason).
Probe = Callable[[], tuple[bool, str]]
# (status, content type, body) or (status, content type, body, extra headers).
Response = tuple[int, str, bytes] | tuple[int, str, bytes, Mapping[str, str]]
# A route returns a Response for a GET.
Route = Callable[[], Response]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes = b""
    client: str = ""


RequestRoute = Callable[[Request], Response]


class Stream:
    """The response side of a streaming route."""

    def __init__(self, handler: BaseHTTPRequestHandler, stopping: threading.Event) -> None:
        self._handler = handler
        self._stopping = stopping
        self.started = False
        self.closed = False

    @property
    def stopping(self) -> bool:
        """The server is shutting down or the client went away: return from the route."""
        return self.closed or self._stopping.is_set()

    def start(
        self, status: int, content_type: str, headers: Mapping[str, str] | None = None
    ) -> bool:
        """Send the status line and headers (no Content-Length: the body ends with the stream)."""
        h = self._handler
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Cache-Control", "no-store")
            h.send_header("Connection", "close")
            for name, value in (headers or {}).items():
                h.send_header(name, value)
            h.end_headers()
        except OSError:
            self.closed = True
        self.started = True
        return not self.closed

    def client_gone(self) -> bool:
        """True once the client closed the connection, found without writing (a stream with
        nothing to send yet): a client of a streaming route sends nothing after its request,
        so a readable socket means end of file."""
        if self.closed:
            return True
        sock = self._handler.connection
        try:
            # Poll first: with the socket's timeout set, Python's recv() waits that long even
            # with MSG_DONTWAIT. poll, not select: descriptors past 1024 are fine.
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLHUP)
            if poller.poll(0) and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                self.closed = True
        except BlockingIOError:
            pass  # readable but nothing to read after all: still there
        except OSError:
            self.closed = True
        return self.closed

    def write(self, data: bytes) -> bool:
        """Send ``data`` now; False (and :attr:`stopping`) once the client is gone."""
        if self.closed:
            return False
        try:
            self._handler.wfile.write(data)
            self._handler.wfile.flush()
        except OSError:  # BrokenPipe, ConnectionReset, socket timeout
            self.closed = True
        return not self.closed


StreamRoute = Callable[[Request, Stream], None]


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Probe,
        ready: Probe,
        routes: dict[str, Route] | None = None,
        limits: IntakeLimits | None = None,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.registry = registry
        self.limits = limits or IntakeLimits()
        self.allowed_hosts = frozenset(normal_host(h) for h in allowed_hosts)
        self.stopping = threading.Event()
        self.routes: dict[str, Route] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: self._probe(health),
            "/readyz": lambda: self._probe(ready),
            **(routes or {}),
        }
        self.request_routes: dict[tuple[str, str], RequestRoute] = {}  # (method, path)
        self.streams: dict[str, StreamRoute] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "edged"

            def setup(self) -> None:
                # The intake read the whole request already: parse it from memory.
                sock, data = self.request
                self.connection = sock
                sock.settimeout(SOCKET_TIMEOUT_S)
                self.rfile = io.BytesIO(data)
                self.wfile = _SocketWriter(sock)

            def finish(self) -> None:
                with contextlib.suppress(OSError):
                    self.wfile.flush()

            def do_GET(self) -> None:
                server._dispatch(self, "GET")

            def do_POST(self) -> None:
                server._dispatch(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http: " + format, *args)

        self._handler_class = Handler
        make_room_for(self.limits.max_connections)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._listener = socket.create_server(
                (host, port), family=family, backlog=min(self.limits.max_connections, 4096)
            )
        except OSError as exc:  # name the address: "Address already in use" alone says little
            raise OSError(exc.errno, f"HTTP server on {host}:{port}: {exc.strerror}") from None
        self.port = self._listener.getsockname()[1]
        self.intake = Intake(self._listener, self.limits, self._spawn)
        self._thread = threading.Thread(target=self.intake.serve, args=(self.stopping,),
                                        daemon=True, name="http")  # fmt: skip

    @staticmethod
    def _probe(probe: Probe) -> tuple[int, str, bytes]:
        ok, reason = probe()
        body = json.dumps({"ok": ok, "reason": reason}).encode() + b"\n"
        return (200 if ok else 503), "application/json", body

    # -- registration ----------------------------------------------------------------------------

    def add_route(self, path: str, route: Route) -> None:
        """A GET route answered from memory."""
        self.routes[path] = route

    def add_request_route(self, path: str, route: RequestRoute, methods: tuple[str, ...] = ("POST",)
                          ) -> None:  # fmt: skip
        """A route that sees the request; ``methods`` among GET and POST."""
        for method in methods:
            self.request_routes[(method, path)] = route

    def add_stream(self, path: str, route: StreamRoute) -> None:
        """A GET route that streams until the client leaves or the server stops."""
        self.streams[path] = route

    # -- serving ---------------------------------------------------------------------------------

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        host = handler.headers.get("Host")
        if not host_allowed(host, self.allowed_hosts):
            # DNS rebinding: a page on another site whose name now points here (or at
            # 127.0.0.1 through an ssh tunnel) sends its own name as Host.
            log.debug("http: refused Host %r from %s", host, handler.client_address[0])
            self._respond(handler, (421, "text/plain", b"unknown Host: use an IP address, "
                                    b"localhost, or a name in http.allowed_hosts\n"))  # fmt: skip
            return
        path, _, query = handler.path.partition("?")
        stream = self.streams.get(path) if method == "GET" else None
        request_route = self.request_routes.get((method, path))
        route = self.routes.get(path) if method == "GET" else None
        if stream is None and request_route is None and route is None:
            known = (
                path in self.routes
                or path in self.streams
                or any(p == path for _, p in self.request_routes)
            )
            handler.send_error(
                405 if known else 404, "method not allowed" if known else "not found"
            )
            return
        body = b""
        if method == "POST":
            try:
                length = int(handler.headers.get("Content-Length") or 0)
            except ValueError:
                handler.send_error(400, "bad Content-Length")
                return
            if length < 0 or length > MAX_BODY_BYTES:
                handler.send_error(413, "request body too large")
                return
            body = handler.rfile.read(length)
        request = Request(method, path, parse_qs(query), handler.headers, body,
                          handler.client_address[0])  # fmt: skip
        if stream is not None:
            self._stream(handler, stream, request)
            return
        try:
            response = request_route(request) if request_route is not None else route()  # type: ignore[misc]
        except Exception:  # a broken route must not kill the server thread
            log.exception("HTTP route %s failed", path)
            response = 500, "text/plain", b"internal error\n"
        self._respond(handler, response)

    @staticmethod
    def _respond(handler: BaseHTTPRequestHandler, response: Response) -> None:
        status, content_type, body = response[:3]
        extra: Mapping[str, str] = response[3] if len(response) > 3 else {}  # type: ignore[misc]
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Cache-Control", "no-store")
            for name, value in extra.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass  # the client left before the answer

    def _stream(self, handler: BaseHTTPRequestHandler, route: StreamRoute, request: Request
                ) -> None:  # fmt: skip
        stream = Stream(handler, self.stopping)
        try:
            route(request, stream)
        except Exception:
            log.exception("HTTP stream %s failed", request.path)
            if not stream.started:
                self._respond(handler, (500, "text/plain", b"internal error\n"))
        handler.close_connection = True

    def _spawn(self, sock: socket.socket, addr: Any, data: bytes) -> None:
        """A complete request: answer it on a thread of its own (streams run for long)."""
        threading.Thread(target=self._handle, args=(sock, addr, data), daemon=True,
                         name="http-request").start()  # fmt: skip

    def _handle(self, sock: socket.socket, addr: Any, data: bytes) -> None:
        try:
            self._handler_class((sock, data), addr, self)
        except Exception:  # a broken request must not leak the connection
            log.exception("HTTP request from %s failed", addr)
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            self.intake.finished()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()  # streams notice within their poll interval and return
        if self._thread.is_alive():
            self._thread.join()  # the intake notices within its tick
        self._listener.close()


def normal_host(name: str) -> str:
    """A host name as compared: lower case, without a trailing dot."""
    return name.strip().lower().rstrip(".")


def host_allowed(header: str | None, allowed: frozenset[str] = frozenset()) -> bool:
    """Whether a request's ``Host`` may be served: an IP literal (with or without a port),
    ``localhost``, or one of ``allowed`` (normalised). No Host at all (HTTP/1.0 tools) is fine:
    browsers, the only clients DNS rebinding can drive, always send one."""
    if header is None:
        return True
    host = header.strip()
    if host.startswith("["):  # [::1]:9108
        literal, sep, _ = host[1:].partition("]")
        return bool(sep) and _is_ip(literal)
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if _is_ip(name):
        return True
    name = normal_host(name)
    return name == "localhost" or name in allowed


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def http_limits(cfg: Any) -> IntakeLimits:
    """The intake's limits from the ``http:`` config section (an HttpConfig)."""
    return IntakeLimits(max_connections=cfg.max_connections,
                        request_timeout_s=cfg.request_timeout_s)  # fmt: skip


def make_room_for(connections: int) -> None:
    """Raise the soft open-file limit (often 1024, also under systemd) toward the hard one so
    that ``connections`` sockets, as many lingering refusals and the daemon's own files fit;
    where the hard limit is lower, the intake makes room by dropping its oldest pending
    connection when accept() fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * connections + 256
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class _SocketWriter(io.BufferedIOBase):
    """``wfile``: every write sent whole (a raw socket file may send only part of it)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes
