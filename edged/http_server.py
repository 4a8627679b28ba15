"""The supervisor's HTTP endpoint: /metrics, /healthz, /readyz (and routes added by features).

A stdlib ``ThreadingHTTPServer`` on a daemon thread: no framework to keep patched on a Pi, and
prometheus_client renders the exposition. Handlers only read state; they never touch files.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# A probe returns (healthy, reason).
Probe = Callable[[], tuple[bool, str]]
# A route returns (status, content type, body) for a GET.
Route = Callable[[], tuple[int, str, bytes]]


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Probe,
        ready: Probe,
        routes: dict[str, Route] | None = None,
    ) -> None:
        self.routes: dict[str, Route] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: self._probe(health),
            "/readyz": lambda: self._probe(ready),
            **(routes or {}),
        }
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "edged"

            def do_GET(self) -> None:
                route = server.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self.send_error(404, "not found")
                    return
                try:
                    status, content_type, body = route()
                except Exception:  # a broken route must not kill the server thread
                    log.exception("HTTP route %s failed", self.path)
                    status, content_type, body = 500, "text/plain", b"internal error\n"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http: " + format, *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="http")  # fmt: skip

    @staticmethod
    def _probe(probe: Probe) -> tuple[int, str, bytes]:
        ok, reason = probe()
        body = json.dumps({"ok": ok, "reason": reason}).encode() + b"\n"
        return (200 if ok else 503), "application/json", body

    def add_route(self, path: str, route: Route) -> None:
        self.routes[path] = route

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
