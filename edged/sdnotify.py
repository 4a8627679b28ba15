"""The systemd notification protocol (``sd_notify(3)``) without libsystemd.

The protocol is one datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). When the variable is
unset — not started by systemd, or ``Type=`` is not ``notify`` — every call is a cheap no-op.

:class:`SystemdNotifier` reads the environment once and, by default, removes
``NOTIFY_SOCKET``/``WATCHDOG_USEC``/``WATCHDOG_PID`` from :data:`os.environ`, so processes
started afterwards (the stage processes, spawned by multiprocessing) never notify: with
``NotifyAccess=main`` systemd would only log their messages as rejected. Create the notifier
in the supervisor *before* starting any stage. For an explicit environment passed to a
subprocess, use :func:`strip_notify_env`.

Sending never raises: a notification is advisory, and a full or vanished socket must not take
the pipeline down. Failures are logged once and reported as ``False``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

NOTIFY_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
# A wedged receiver must not block the supervisor's loop for long.
_SEND_TIMEOUT_S = 1.0


def strip_notify_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` without the variables that let a process talk to systemd."""
    return {k: v for k, v in env.items() if k not in NOTIFY_ENV_VARS}


def socket_address(value: str | None) -> str | bytes | None:
    """The ``sendto`` address for a ``$NOTIFY_SOCKET`` value, or ``None`` if unusable.

    ``@name`` is the Linux abstract namespace (a leading NUL byte on the wire). Only absolute
    paths are valid otherwise; ``vsock:`` addresses (systemd >= 254, VMs) are not supported.
    """
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd expects in ``MONOTONIC_USEC=``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment in the datagram.
    return " ".join(text.splitlines())


class SystemdNotifier:
    """Sends state changes to systemd; a no-op when not started as a ``Type=notify`` unit.

    Args:
        environ: where to read the variables; default :data:`os.environ`.
        unset_environment: remove the variables from ``environ`` after reading them, so that
            child processes do not inherit them (see the module docstring).
    """

    def __init__(
        self,
        environ: MutableMapping[str, str] | None = None,
        *,
        unset_environment: bool = True,
    ) -> None:
        env = os.environ if environ is None else environ
        raw_socket = env.get("NOTIFY_SOCKET")
        self._address = socket_address(raw_socket)
        if raw_socket and self._address is None:
            log.warning("ignoring unsupported NOTIFY_SOCKET=%r", raw_socket)
        self._watchdog_usec = _parse_positive_int(env.get("WATCHDOG_USEC"))
        self._watchdog_pid = _parse_positive_int(env.get("WATCHDOG_PID"))
        if unset_environment:
            for name in NOTIFY_ENV_VARS:
                env.pop(name, None)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Whether notifications go anywhere (``$NOTIFY_SOCKET`` was set and usable)."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half the timeout), or ``None`` if not asked.

        ``None`` when ``WatchdogSec=`` is unset, or when ``$WATCHDOG_PID`` names another
        process (the variables were meant for a parent that exec'd us, or for a child).
        """
        if self._watchdog_usec is None:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != os.getpid():
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) finished: ``READY=1``, optionally with a status line."""
        return self.notify(READY="1", STATUS=status)

    def reloading(self, status: str | None = None) -> bool:
        """A reload started; finish it with :meth:`ready`.

        ``MONOTONIC_USEC`` is required by systemd >= 253 for ``Type=notify-reload`` and
        harmless before.
        """
        return self.notify(RELOADING="1", MONOTONIC_USEC=str(monotonic_usec()), STATUS=status)

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown started (send it on SIGTERM, before draining)."""
        return self.notify(STOPPING="1", STATUS=status)

    def watchdog(self) -> bool:
        """Keep-alive ping; send it only while the pipeline is really making progress."""
        return self.notify(WATCHDOG="1")

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by ``systemctl status`` (fps, active variant)."""
        return self.notify(STATUS=text)

    def notify(self, **fields: str | None) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; ``None`` values are left out.

        Returns whether the datagram was sent (``False`` when disabled or on error).
        """
        if self._address is None:
            return False
        lines = [f"{key}={_one_line(value)}" for key, value in fields.items() if value is not None]
        if not lines:
            return False
        return self._send("\n".join(lines).encode())

    def close(self) -> None:
        """Close the socket (it is reopened on the next notification)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _send(self, payload: bytes) -> bool:
        with self._lock:
            try:
                if self._sock is None:
                    # Python sockets are close-on-exec, so children never inherit this one.
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.settimeout(_SEND_TIMEOUT_S)
                self._sock.sendto(payload, self._address)  # type: ignore[arg-type]
            except OSError as exc:
                if not self._warned:
                    log.warning("sd_notify to %r failed: %s", self._address, exc)
                    self._warned = True
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                return False
            return True

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_positive_int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None
