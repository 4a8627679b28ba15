"""Frame hand-off between stage processes: one Unix datagram socket per stage inbox.

Why not ZeroMQ for this hop: a ZeroMQ message crosses the sender's and the receiver's I/O
threads before the receiving stage wakes, three thread wake-ups per hop. Measured on the 2-core
dev VM: 120 µs one-way idle (8 µs for a Unix datagram), and 0.6–0.8 ms per hop while inference
keeps both cores busy: 2.6 of the 5.2 ms edged added to every frame. A datagram wakes the
receiver directly. ZeroMQ stays where its features matter (supervisor channel, slot releases,
control, publishing).

Unix datagrams are reliable and ordered. A receiver whose queue is full (``max_dgram_qlen``,
10 on Linux by default) makes the sender wait, which is back-pressure. A receiver that is not
there (starting, or dead and being restarted) is waited for: without limit for a ``patient``
send (lossless mode, end-of-stream markers), else at most ``absent_wait_s``, after which the
frame is given up and the caller frees its slots, as for any frame lost with a crashed stage.
"""

from __future__ import annotations

import errno
import mmap
import os
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path

# A datagram must fit the sender's socket buffer (less 32 bytes of kernel overhead). Asking for
# 1 MiB gets min(1 MiB, net.core.wmem_max) × 2: ≥ 416 KB on a stock Linux, while a frame with
# the most detections the config allows (5000) and 1000 labels pickles to ~175 KB.
SEND_BUFFER_BYTES = 1 << 20
MAX_MESSAGE_BYTES = 212_992 - 64  # the limit before connecting: Linux's default buffer
_ABSENT = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN, errno.EDESTADDRREQ)
_RETRY_S = 0.02


class HandoffError(Exception):
    """A message that cannot be sent at all (too large)."""


def _identity(path: Path) -> tuple[int, int]:
    # Inode numbers are reused at once after an unlink; the change time tells files apart.
    st = os.stat(path)
    return st.st_ino, st.st_ctime_ns


class FrameInbox:
    """The receiving end of a stage: bound to ``path``, read without blocking after a poll."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)  # left by a killed predecessor
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o600)
        self.sock.setblocking(False)
        self._identity = _identity(path)
        # Bigger than any datagram a sender can be granted (2 × the 1 MiB it asks for), and
        # reused: a fresh buffer that size per message would cost an mmap each time. Anonymous
        # memory: only the pages messages actually reach become resident (a bytearray would
        # zero, and so commit, all 2 MiB in every stage).
        self._buffer = mmap.mmap(-1, 2 * SEND_BUFFER_BYTES + 1024)
        self._view = memoryview(self._buffer)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive_all(self) -> list[bytes]:
        """Every message waiting, oldest first (none: an empty list)."""
        messages = []
        while True:
            try:
                size = self.sock.recv_into(self._buffer)
            except BlockingIOError:
                return messages
            messages.append(bytes(self._view[:size]))

    def wait(self, timeout_s: float) -> bool:
        return bool(select.select([self.sock], [], [], timeout_s)[0])

    def close(self) -> None:
        self._view.release()
        self._buffer.close()
        self.sock.close()
        # A restarted successor may already have bound the same path: leave its socket alone.
        try:
            if _identity(self.path) == self._identity:
                self.path.unlink()
        except FileNotFoundError:
            pass


class FrameOutbox:
    """The sending end: connected to the next stage's inbox, reconnected after its restart."""

    def __init__(self, path: Path, absent_wait_s: float = 2.0) -> None:
        self.path = path
        self.absent_wait_s = absent_wait_s
        self.sock: socket.socket | None = None
        self.delivered = 0
        self.max_bytes = MAX_MESSAGE_BYTES  # until connected: then what the kernel granted
        # When the receiver was first found gone, across sends: once it has been gone for
        # absent_wait_s, later frames are given up at once instead of each waiting again (a
        # sender that also reads a camera must keep reading while the next stage restarts).
        self._absent_since: float | None = None

    def _connect(self) -> bool:
        self._close_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.max_bytes = granted - 64  # what this kernel will take in one datagram
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            if exc.errno in _ABSENT:
                return False
            raise
        sock.setblocking(False)
        self.sock = sock
        self._absent_since = None
        return True

    def send(self, payload: bytes, should_stop: Callable[[], bool], patient: bool = False) -> bool:
        """Deliver ``payload``; False when the receiver stayed absent or we must stop.

        The very first message, and every ``patient`` one, waits for the receiver as long as
        it takes (stages start in any order; lossless mode loses nothing to a restart); others
        wait until the receiver has been gone ``absent_wait_s`` in all (not per message).
        """
        while True:
            if self.sock is None and not self._connect():
                now = time.monotonic()
                if self._absent_since is None:
                    self._absent_since = now
                limited = self.delivered and not patient
                waited_too_long = limited and now - self._absent_since >= self.absent_wait_s
                if waited_too_long or should_stop():
                    return False
                time.sleep(_RETRY_S)
                continue
            assert self.sock is not None
            if len(payload) > self.max_bytes:
                raise HandoffError(f"message of {len(payload)} bytes exceeds {self.max_bytes}")
            try:
                self.sock.send(payload)
            except BlockingIOError:  # the receiver's queue is full: back-pressure
                if should_stop():
                    return False
                select.select([], [self.sock], [], 0.1)
                continue
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    raise HandoffError(f"message of {len(payload)} bytes is too large") from exc
                if exc.errno not in _ABSENT:
                    raise
                self._close_socket()  # the receiver we were connected to is gone
                continue
            self.delivered += 1
            return True

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        self._close_socket()
