"""Clients that try to hold an HTTP server: idle connections and slow-header (slowloris) ones.

Used by tests/unit/test_http_limits.py and by the stress command (tests/tools/http_stress.py).
One selector thread drives every connection; a connection the server closes is opened again,
as an attacker would.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time


class Holders:
    """``idle`` connections that never send, ``slow`` ones that send a header byte every
    ``drip_s`` seconds and never finish; reopened when the server closes them."""

    def __init__(self, port: int, idle: int, slow: int, drip_s: float = 1.0) -> None:
        self.port = port
        self.idle, self.slow, self.drip_s = idle, slow, drip_s
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.reopened = 0
        self.answers: list[bytes] = []  # first bytes of what the server sent before closing
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, slow: bool) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setblocking(False)
        if slow:
            sock.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        self.sel.register(sock, selectors.EVENT_READ, slow)

    def __enter__(self) -> Holders:
        for i in range(self.idle + self.slow):
            self._open(i >= self.idle)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()

    @property
    def open(self) -> int:
        return len(self.sel.get_map())

    def _run(self) -> None:
        next_drip = time.monotonic() + self.drip_s
        while not self.stop.is_set():
            for key, _ in self.sel.select(0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    self.answers.append(data[:40])
                    continue
                self.sel.unregister(sock)
                sock.close()
                self.reopened += 1
                with contextlib.suppress(OSError):
                    self._open(key.data)
            if time.monotonic() >= next_drip:
                next_drip += self.drip_s
                for key in list(self.sel.get_map().values()):
                    if key.data:
                        with contextlib.suppress(OSError):
                            key.fileobj.send(b"X")  # type: ignore[union-attr]


def raw_request(port: int, data: bytes, timeout: float = 30.0) -> bytes:
    """Send ``data`` and read until the server closes (or ``timeout``): the raw answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)
