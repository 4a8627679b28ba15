"""Test helpers that stand in for systemd: a real ``$NOTIFY_SOCKET`` receiver.

Usage (unit or integration test)::

    with NotifySocketReceiver() as rx:
        env = {**os.environ, **rx.environ(watchdog_usec=2_000_000)}
        proc = subprocess.Popen([...], env=env)
        rx.wait_for(lambda m: m.get("READY") == "1", timeout=30)
        pings = rx.wait_for_count(lambda m: "WATCHDOG" in m, 3, timeout=10)

Each datagram is parsed into a :class:`NotifyMessage` (a dict of ``KEY -> VALUE`` with the
receive time and the sender's pid from ``SO_PASSCRED``, like systemd checks for
``NotifyAccess=main``).
"""

from __future__ import annotations

import select
import socket
import struct
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

_UCRED = struct.Struct("3i")  # pid, uid, gid


class NotifyMessage(dict[str, str]):
    """One notification: its ``KEY=VALUE`` fields, plus ``received_at`` and ``sender_pid``."""

    def __init__(
        self, fields: dict[str, str], received_at: float, sender_pid: int | None, raw: bytes
    ) -> None:
        super().__init__(fields)
        self.received_at = received_at
        self.sender_pid = sender_pid
        self.raw = raw


def parse_notify_payload(payload: bytes) -> dict[str, str]:
    """``b"READY=1\\nSTATUS=x"`` → ``{"READY": "1", "STATUS": "x"}`` (like systemd's parser)."""
    fields: dict[str, str] = {}
    for line in payload.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


class NotifySocketReceiver:
    """Binds an AF_UNIX datagram socket and collects notifications sent to it.

    Args:
        abstract: bind in the Linux abstract namespace (``NOTIFY_SOCKET=@name``) instead of
            a path in a temporary directory.
    """

    def __init__(self, *, abstract: bool = False) -> None:
        self.abstract = abstract
        self.messages: list[NotifyMessage] = []
        self._sock: socket.socket | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.address: str = ""

    def __enter__(self) -> NotifySocketReceiver:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if self.abstract:
            name = f"edged-test-notify-{uuid.uuid4().hex}"
            sock.bind(b"\0" + name.encode())
            self.address = "@" + name
        else:
            # Short base dir: AF_UNIX paths are limited to 108 bytes.
            self._tmpdir = tempfile.TemporaryDirectory(prefix="edged-notify-", dir="/tmp")
            path = str(Path(self._tmpdir.name) / "notify.sock")
            sock.bind(path)
            self.address = path
        self._sock = sock
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def environ(
        self, *, watchdog_usec: int | None = None, watchdog_pid: int | None = None
    ) -> dict[str, str]:
        """The variables systemd would set for a ``Type=notify`` service using this socket."""
        env = {"NOTIFY_SOCKET": self.address}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        if watchdog_pid is not None:
            env["WATCHDOG_PID"] = str(watchdog_pid)
        return env

    def receive(self, timeout: float = 0.0) -> list[NotifyMessage]:
        """Read everything that arrives within ``timeout`` s (stops at the first quiet poll)."""
        assert self._sock is not None, "use NotifySocketReceiver as a context manager"
        got: list[NotifyMessage] = []
        wait = timeout
        while True:
            ready, _, _ = select.select([self._sock], [], [], max(wait, 0.0))
            if not ready:
                break
            payload, ancdata, _, _ = self._sock.recvmsg(65536, socket.CMSG_SPACE(_UCRED.size))
            got.append(
                NotifyMessage(
                    parse_notify_payload(payload), time.monotonic(), _sender_pid(ancdata), payload
                )
            )
            wait = 0.0  # drain what is queued, then return
        self.messages.extend(got)
        return got

    def wait_for(self, predicate: Callable[[NotifyMessage], bool], timeout: float) -> NotifyMessage:
        """The first message (received so far or within ``timeout`` s) matching ``predicate``.

        Raises:
            TimeoutError: nothing matched in time; the message lists what did arrive.
        """
        return self.wait_for_count(predicate, 1, timeout)[0]

    def wait_for_count(
        self, predicate: Callable[[NotifyMessage], bool], count: int, timeout: float
    ) -> list[NotifyMessage]:
        """The first ``count`` matching messages, waiting up to ``timeout`` s in total."""
        deadline = time.monotonic() + timeout
        while True:
            matches = [m for m in self.messages if predicate(m)]
            if len(matches) >= count:
                return matches[:count]
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [m.raw for m in self.messages]
                raise TimeoutError(
                    f"{len(matches)}/{count} matching notifications after {timeout} s; "
                    f"received: {seen!r}"
                )
            self.receive(timeout=min(left, 0.1))

    def fields(self, key: str) -> list[str]:
        """Every value received so far for ``key`` (e.g. all ``STATUS`` lines), in order."""
        return [m[key] for m in self.messages if key in m]


def _sender_pid(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return _UCRED.unpack(data[: _UCRED.size])[0]
    return None
