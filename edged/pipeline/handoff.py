"""Frame hand-off between stage processes: one Unix datagram socket per stage inbox.

Why not ZeroMQ for this hop: a ZeroMQ message crosses the sender's and the receiver's I/O
threads before the receiving stage wakes, three thread wake-ups per hop. Measured on the 2-core
dev VM: 120 µs one-way idle (8 µs for a Unix datagram), and 0.6–0.8 ms per hop while inference
keeps both cores busy: 2.6 of the 5.2 ms edged added to every frame. A datagram wakes the
receiver directly. ZeroMQ stays where its features matter (supervisor channel, slot releases,
control, publishing).

Unix datagrams are reliable and ordered. A receiver whose queue is full (``max_dgram_qlen``,
10 on Linux by default; at most one message per ring slot is ever in flight) makes the sender
wait, which is back-pressure. A receiver that is not there (starting, or dead and being
restarted) is waited for at most ``absent_wait_s``; after that the frame is given up and the
caller frees its slots, as for any frame lost with a crashed stage.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path

# Largest message: a frame with ``postprocess.max_detections`` (≤ 5000) detections pickles to
# ~150 KB; Linux's default socket send buffer (212 KB) bounds a datagram.
MAX_MESSAGE_BYTES = 212_992
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

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive_all(self) -> list[bytes]:
        """Every message waiting, oldest first (none: an empty list)."""
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(MAX_MESSAGE_BYTES))
            except BlockingIOError:
                return messages

    def wait(self, timeout_s: float) -> bool:
        return bool(select.select([self.sock], [], [], timeout_s)[0])

    def close(self) -> None:
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

    def _connect(self) -> bool:
        self._close_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            if exc.errno in _ABSENT:
                return False
            raise
        sock.setblocking(False)
        self.sock = sock
        return True

    def send(self, payload: bytes, should_stop: Callable[[], bool]) -> bool:
        """Deliver ``payload``; False when the receiver stayed absent or we must stop.

        The very first message waits for the receiver as long as it takes (stages start in
        any order); later ones wait ``absent_wait_s`` for a restarting receiver.
        """
        if len(payload) > MAX_MESSAGE_BYTES:
            raise HandoffError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_BYTES}")
        absent_since: float | None = None
        while True:
            if self.sock is None and not self._connect():
                now = time.monotonic()
                absent_since = absent_since if absent_since is not None else now
                waited_too_long = self.delivered and now - absent_since >= self.absent_wait_s
                if waited_too_long or should_stop():
                    return False
                time.sleep(_RETRY_S)
                continue
            assert self.sock is not None
            try:
                self.sock.send(payload)
            except BlockingIOError:  # the receiver's queue is full: back-pressure
                if should_stop():
                    return False
                select.select([], [self.sock], [], 0.1)
                continue
            except OSError as exc:
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
