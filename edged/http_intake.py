"""Accepting HTTP connections so that no client can hold the server.

One selector thread accepts connections and reads each request (head and body) without
blocking; a request gets a handler thread only once it has fully arrived. An idle or slow
client therefore costs a socket and a small buffer, never a thread, and:

- at most ``max_connections`` are open at once (being read or answered); a connection beyond
  that gets an immediate ``503`` and is closed;
- the whole request must arrive within ``request_timeout_s`` of the connection (a client that
  trickles a header byte now and then is cut off all the same: ``408``);
- the request head is at most ``max_head_bytes`` (``431``); a body over ``max_body_bytes`` is
  not read (the handler answers ``413``).

``ThreadingHTTPServer`` had none of this: a thread per connection, a timeout per ``recv`` (so a
slow client held its thread forever) and up to ~6.5 MB of headers per connection.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# A complete request: (connected socket, client address, head + body bytes).
RequestHandler = Callable[[socket.socket, tuple, bytes], None]
TICK_S = 0.25  # how often deadlines are checked and a stop is noticed
# A refused connection is kept this long after its answer, reading what the client sends:
# closing a socket with unread input sends a reset, which can destroy the answer in flight.
LINGER_S = 2.0


@dataclass(frozen=True)
class IntakeLimits:
    max_connections: int = 256
    request_timeout_s: float = 10.0
    max_head_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024


def canned(status: int, reason: str, text: str, extra: str = "") -> bytes:
    """A complete HTTP/1.0 response that closes the connection (sent without a handler)."""
    body = (text + "\n").encode()
    return (
        f"HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode() + body


BUSY = canned(503, "Service Unavailable", "too many connections", "Retry-After: 1\r\n")
TIMEOUT = canned(408, "Request Timeout", "request not received in time")
TOO_LARGE = canned(431, "Request Header Fields Too Large", "request head too large")


def content_length(head: bytes) -> int:
    """The Content-Length a request head declares; 0 when absent or unreadable (the handler
    then answers the request as it is, and refuses a bad value itself)."""
    for line in head.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            try:
                return max(0, int(value.strip()))
            except ValueError:
                return 0
    return 0


class _Pending:
    """A connection whose request has not fully arrived yet."""

    __slots__ = ("addr", "buf", "deadline", "need", "sock")

    def __init__(self, sock: socket.socket, addr: tuple, deadline: float) -> None:
        self.sock = sock
        self.addr = addr
        self.deadline = deadline
        self.buf = bytearray()
        self.need: int | None = None  # total bytes once the head is complete

    def complete(self, limits: IntakeLimits) -> bool | None:
        """True: the request is all here; False: not yet; None: the head is too large."""
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            size = end + 4
            if end < 0:
                end = self.buf.find(b"\n\n")
                size = end + 2
            if end < 0:
                return None if len(self.buf) > limits.max_head_bytes else False
            if size > limits.max_head_bytes:
                return None
            body = content_length(bytes(self.buf[:size]))
            # An oversized body is not waited for: the handler refuses it from the head.
            self.need = size + (body if body <= limits.max_body_bytes else 0)
        return len(self.buf) >= self.need


class Intake:
    """Accepts on ``listener`` and hands complete requests to ``handle`` (which must call
    :meth:`finished` once it has closed the connection)."""

    def __init__(
        self, listener: socket.socket, limits: IntakeLimits, handle: RequestHandler
    ) -> None:
        self.listener = listener
        self.limits = limits
        self.handle = handle
        self.pending: dict[socket.socket, _Pending] = {}
        self.closing: dict[socket.socket, float] = {}  # answered, draining: close deadline
        self._active = 0  # handed to a handler, not finished yet
        self._lock = threading.Lock()
        self.refused = 0  # 503s sent for too many connections
        self.timed_out = 0

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self.pending) + self._active

    def finished(self) -> None:
        with self._lock:
            self._active -= 1

    def serve(self, stopping: threading.Event) -> None:
        self.listener.setblocking(False)
        with selectors.DefaultSelector() as sel:
            sel.register(self.listener, selectors.EVENT_READ)
            try:
                while not stopping.is_set():
                    try:
                        self._turn(sel)
                    except Exception:  # a bug here must not leave the daemon without HTTP
                        log.exception("HTTP intake")
                        time.sleep(TICK_S)
            finally:
                for pending in list(self.pending.values()):
                    self._drop(sel, pending)
                for sock in list(self.closing):
                    self._close(sel, sock)

    def _turn(self, sel: selectors.BaseSelector) -> None:
        for key, _ in sel.select(TICK_S):
            if key.fileobj is self.listener:
                self._accept(sel)
            elif key.data is None:
                self._drain(sel, key.fileobj)  # type: ignore[arg-type]
            elif key.fileobj in self.pending:
                self._read(sel, key.data)
        self._expire(sel)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        while True:
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: make room rather than spin
                log.warning("HTTP accept failed: %s", exc)
                self._drop_oldest(sel)
                return
            sock.setblocking(False)
            if self.open_connections >= self.limits.max_connections:
                self.refused += 1
                self._answer(sel, sock, BUSY)
                continue
            pending = _Pending(sock, addr, time.monotonic() + self.limits.request_timeout_s)
            with self._lock:
                self.pending[sock] = pending
            sel.register(sock, selectors.EVENT_READ, pending)

    def _read(self, sel: selectors.BaseSelector, pending: _Pending) -> None:
        try:
            data = pending.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client left before its request was complete
            self._drop(sel, pending)
            return
        pending.buf += data
        state = pending.complete(self.limits)
        if state is None:
            self._drop(sel, pending, TOO_LARGE)
        elif state:
            sel.unregister(pending.sock)
            with self._lock:
                del self.pending[pending.sock]
                self._active += 1
            pending.sock.setblocking(True)
            try:
                self.handle(pending.sock, pending.addr, bytes(pending.buf))
            except Exception:  # a handler that could not even start: never the intake loop
                log.exception("HTTP handler failed to start")
                with contextlib.suppress(OSError):
                    pending.sock.close()
                self.finished()

    def _expire(self, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for pending in [p for p in self.pending.values() if p.deadline <= now]:
            self.timed_out += 1
            self._drop(sel, pending, TIMEOUT)
        for sock in [s for s, deadline in self.closing.items() if deadline <= now]:
            self._close(sel, sock)

    def _drop_oldest(self, sel: selectors.BaseSelector) -> None:
        if self.pending:
            self._drop(sel, min(self.pending.values(), key=lambda p: p.deadline), TIMEOUT)

    def _drop(self, sel: selectors.BaseSelector, pending: _Pending, answer: bytes = b"") -> None:
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(pending.sock)
        with self._lock:
            self.pending.pop(pending.sock, None)
        if answer:
            self._answer(sel, pending.sock, answer)
        else:
            _close_quietly(pending.sock)

    def _answer(self, sel: selectors.BaseSelector, sock: socket.socket, answer: bytes) -> None:
        """Send ``answer`` without blocking (a client that does not read loses it), then
        linger, reading, until the client closes or LINGER_S passes."""
        try:
            sock.send(answer)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            _close_quietly(sock)
            return
        if len(self.closing) >= self.limits.max_connections:  # lingering is bounded too
            _close_quietly(sock)
            return
        self.closing[sock] = time.monotonic() + LINGER_S
        sel.register(sock, selectors.EVENT_READ, None)

    def _drain(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        try:
            if sock.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._close(sel, sock)

    def _close(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(sock)
        self.closing.pop(sock, None)
        _close_quietly(sock)


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
