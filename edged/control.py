"""The control protocol: versioned JSON requests and replies over ZeroMQ (REQ ↔ ROUTER/REP).

Request:  ``{"version": 1, "command": "status" | "swap" | "reload", "variant": "static"}``
Reply:    ``{"version": 1, "ok": true, ...}`` or ``{"version": 1, "ok": false, "error": "..."}``
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

PROTOCOL_VERSION = 1
COMMANDS = ("status", "swap", "reload")
MAX_REQUEST_BYTES = 64 * 1024


class ProtocolError(ValueError):
    """A malformed or unsupported request; the message goes back to the client."""


@dataclass(frozen=True)
class Request:
    command: str
    variant: str | None = None


def parse_request(raw: bytes) -> Request:
    """Validate a request; raises :class:`ProtocolError` with a reason for anything off."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"request is not valid JSON: {exc}") from None
    except (RecursionError, ValueError):  # absurd nesting or a 5000-digit number
        raise ProtocolError("request is not valid JSON: too deeply nested or too large") from None
    if not isinstance(data, dict):
        raise ProtocolError("request must be a JSON object")
    version = data.get("version")
    if type(version) is not int or version != PROTOCOL_VERSION:  # True == 1 in Python
        raise ProtocolError(f"unsupported protocol version {version!r} (expected 1)")
    command = data.get("command")
    if command not in COMMANDS:
        raise ProtocolError(f"unknown command {command!r} (known: {', '.join(COMMANDS)})")
    unknown = set(data) - {"version", "command", "variant"}
    if unknown:
        raise ProtocolError(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    variant = data.get("variant")
    if command == "swap":
        if not isinstance(variant, str) or not variant or len(variant) > 64:
            raise ProtocolError("swap needs a 'variant' string (1-64 characters)")
    elif variant is not None:
        raise ProtocolError(f"{command} takes no 'variant'")
    return Request(command, variant)


def reply(ok: bool, **fields: Any) -> bytes:
    return json.dumps({"version": PROTOCOL_VERSION, "ok": ok, **fields}, default=str).encode()


def error_reply(error: str) -> bytes:
    return reply(False, error=error)


def secure_ipc(endpoint: str) -> None:
    """Make an ipc:// socket file readable and writable by its owner only."""
    if endpoint.startswith("ipc://"):
        os.chmod(endpoint[len("ipc://") :], 0o600)


def configure_curve_server(sock: zmq.Socket, secret_key_file: str, authorized_dir: str) -> Any:
    """CURVE encryption + client allow-list for a tcp:// control endpoint."""
    from zmq.auth import load_certificate
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(sock.context)
    auth.start()
    auth.configure_curve(domain="*", location=authorized_dir)
    public, secret = load_certificate(secret_key_file)
    if secret is None:
        raise ValueError(f"{secret_key_file} holds no secret key")
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth


class NotRunning(ConnectionError):
    """Nothing listens on the control endpoint: no daemon runs there."""


def _check_listening(endpoint: str) -> None:
    """Fail at once, instead of after the reply timeout, when an ipc endpoint has no daemon:
    the socket file is missing, or left behind by one that died (connection refused)."""
    if not endpoint.startswith("ipc://"):
        return  # tcp: ZeroMQ connects lazily; the timeout is the only signal
    path = endpoint[len("ipc://") :]
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(f"edged is not running (nothing listens on {endpoint})") from None
    except PermissionError:  # ZeroMQ would only time out, minutes later
        raise NotRunning(
            f"permission denied on {path}: the service's runtime directory is its own; "
            "run edged ctl with sudo"
        ) from None
    except OSError:
        return  # anything else: let ZeroMQ report what it sees
    finally:
        probe.close()


def call(
    endpoint: str,
    command: str,
    variant: str | None = None,
    timeout_s: float = 60.0,
    curve_keys: tuple[Path, Path] | None = None,
) -> dict[str, Any]:
    """Send one request and wait for the reply (raises TimeoutError when none comes, and
    :class:`NotRunning` at once when no daemon listens on an ipc endpoint)."""
    _check_listening(endpoint)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    if curve_keys is not None:
        from zmq.auth import load_certificate

        client_public, client_secret = load_certificate(str(curve_keys[0]))
        server_public, _ = load_certificate(str(curve_keys[1]))
        sock.curve_publickey, sock.curve_secretkey = client_public, client_secret
        sock.curve_serverkey = server_public
    try:
        sock.connect(endpoint)
        request: dict[str, Any] = {"version": PROTOCOL_VERSION, "command": command}
        if variant is not None:
            request["variant"] = variant
        sock.send(json.dumps(request).encode())
        if not sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no reply from {endpoint} within {timeout_s:.0f}s")
        return json.loads(sock.recv())
    finally:
        sock.close()
