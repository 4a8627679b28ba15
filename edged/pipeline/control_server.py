"""The control socket's transport: bound private (0600 ipc file, CURVE on tcp://), malformed
requests answered here with the reason, well-formed ones handed to the caller, replies sent."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import zmq

from edged.config import ControlConfig
from edged.control import (
    ProtocolError,
    Request,
    configure_curve_server,
    error_reply,
    secure_ipc,
    waiting_requests,
)

log = logging.getLogger("edged.pipeline.supervisor")  # the supervisor's lines, as before

MAX_REQUEST_BYTES = 1 << 20  # what ZeroMQ accepts at all; parse_request caps it lower


class ControlServer:
    def __init__(self, ctx: zmq.Context, cfg: ControlConfig, default_endpoint: str) -> None:
        self._ctx = ctx
        self._cfg = cfg
        self._default_endpoint = default_endpoint
        self.socket: zmq.Socket | None = None
        self.endpoint = ""
        self._auth: Any = None

    def start(self) -> None:
        endpoint = self._cfg.endpoint or self._default_endpoint
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        if endpoint.startswith("tcp://"):
            self._auth = configure_curve_server(sock, self._cfg)
        old_umask = os.umask(0o177)  # the ipc file is created 0600 from the start
        try:
            sock.bind(endpoint)
        finally:
            os.umask(old_umask)
        secure_ipc(endpoint)
        self.socket = sock
        self.endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        log.info("control socket on %s", self.endpoint)

    def requests(self) -> Iterator[tuple[bytes, Request]]:
        """Every well-formed request waiting now, with the identity to reply to."""
        assert self.socket is not None
        for identity, request in waiting_requests(self.socket):
            if isinstance(request, ProtocolError):
                self.reply(identity, error_reply(str(request)))
            else:
                yield identity, request

    def reply(self, identity: bytes | None, body: bytes) -> None:
        """``identity`` None: a request nobody waits for (a signal's reload)."""
        if identity is None or self.socket is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self.socket.send_multipart((identity, b"", body), zmq.NOBLOCK)

    def close(self) -> None:
        if self._auth is not None:
            self._auth.stop()
        if self.socket is not None:
            self.socket.close(0)
