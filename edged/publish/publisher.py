"""The detections publisher's socket: what a peer on ``publish.endpoint`` can reach and make
it hold.

An XPUB (a PUB that also reports (un)subscriptions, so the stage knows who listens), bound to
``publish.endpoint``, with CURVE when keys are configured (as the control socket has: the same
settings and checks), and a cap on the size of what a peer may send it: a subscriber only ever
sends topic prefixes, so anything longer is refused by libzmq, which drops that connection.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import zmq

from edged.config import PublishConfig
from edged.control import configure_curve_server
from edged.preview.subscriptions import configure_xpub

# A subscription is a topic prefix: ``detections.<camera_id>`` is at most 75 bytes.
MAX_SUBSCRIPTION_BYTES = 1024


@dataclass
class Publisher:
    sock: zmq.Socket
    endpoint: str  # as bound (a tcp:// port 0 resolved)
    auth: Any = None  # the CURVE authenticator thread, when keys are configured

    def close(self) -> None:
        self.sock.close()
        if self.auth is not None:
            self.auth.stop()


def open_publisher(ctx: zmq.Context, cfg: PublishConfig) -> Publisher:
    """Bind the publisher (raises zmq.ZMQError for the address, OSError for the key files)."""
    sock = ctx.socket(zmq.XPUB)
    auth = None
    try:
        sock.setsockopt(zmq.SNDHWM, cfg.send_hwm)
        configure_xpub(sock)  # count every (un)subscription, not just new topics
        sock.setsockopt(zmq.LINGER, 500)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)
        if cfg.curve and cfg.endpoint.startswith("tcp://"):
            auth = configure_curve_server(sock, cfg, "publish")
        sock.bind(cfg.endpoint)
    except BaseException:
        sock.close(0)
        if auth is not None:
            with contextlib.suppress(Exception):
                auth.stop()
        raise
    return Publisher(sock, sock.getsockopt(zmq.LAST_ENDPOINT).decode(), auth)
