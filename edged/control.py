"""The control protocol: versioned JSON requests and replies over ZeroMQ (REQ ↔ ROUTER/REP).

Request:  ``{"version": 1, "command": "status" | "swap" | "reload", "variant": "static"}``
Reply:    ``{"version": 1, "ok": true, ...}`` or ``{"version": 1, "ok": false, "error": "..."}``
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from edged.config import ConfigError, CurveServerConfig

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


def waiting_requests(sock: zmq.Socket) -> Iterator[tuple[bytes, Request | ProtocolError]]:
    """Each request queued on a ROUTER control socket, without blocking: (the client's
    identity, its parsed request or why it was refused). Anything but a REQ envelope is
    skipped: there is nobody sensible to answer."""
    while True:
        try:
            parts = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        if len(parts) != 3 or parts[1] != b"":
            continue
        try:
            yield parts[0], parse_request(parts[2])
        except ProtocolError as exc:
            yield parts[0], exc


def reply(ok: bool, **fields: Any) -> bytes:
    return json.dumps({"version": PROTOCOL_VERSION, "ok": ok, **fields}, default=str).encode()


def error_reply(error: str) -> bytes:
    return reply(False, error=error)


def secure_ipc(endpoint: str) -> None:
    """Make an ipc:// socket file readable and writable by its owner only."""
    if endpoint.startswith("ipc://"):
        os.chmod(endpoint[len("ipc://") :], 0o600)


def curve_key_errors(cfg: CurveServerConfig, section: str = "control") -> list[tuple[str, str]]:
    """``(field, reason)`` for each key file the tcp:// endpoint of ``section`` (``control``,
    ``publish``) cannot use; none for ipc, nor without CURVE (validation said if that is fine).

    Checked before start, so that a missing key directory is a configuration error naming the
    setting: pyzmq's authenticator only logs it, and then refuses every client.
    """
    if not (cfg.endpoint or "").startswith("tcp://") or not cfg.curve:
        return []
    from zmq.auth import load_certificate, load_certificates

    errors = []
    secret_file = cfg.curve_server_secret_key_file or ""
    field = f"{section}.curve_server_secret_key_file"
    if not Path(secret_file).is_file():
        errors.append((field, f"no such file: {secret_file}"))
    else:
        try:
            if load_certificate(secret_file)[1] is None:
                errors.append((field, f"{secret_file} holds no secret key"))
        except (OSError, ValueError) as exc:
            errors.append((field, f"cannot read {secret_file}: {exc}"))
    keys_dir = cfg.curve_authorized_keys_dir
    field = f"{section}.curve_authorized_keys_dir"
    if keys_dir is not None:
        if not Path(keys_dir).is_dir():
            errors.append((field, f"no such directory: {keys_dir}"))
        else:
            try:
                if not load_certificates(keys_dir):
                    errors.append((field, f"{keys_dir} holds no client public keys (*.key)"))
            except (OSError, ValueError) as exc:  # a .key file without a public key
                errors.append((field, f"cannot read the keys in {keys_dir}: {exc}"))
    return errors


def check_curve_keys(
    cfg: CurveServerConfig, source: str = "config", section: str = "control"
) -> None:
    """Raise :class:`ConfigError` naming each unusable CURVE key setting."""
    errors = curve_key_errors(cfg, section)
    if errors:
        raise ConfigError(errors, source)


def configure_curve_server(
    sock: zmq.Socket, cfg: CurveServerConfig, section: str = "control"
) -> Any:
    """CURVE encryption + client allow-list for a tcp:// endpoint (control, publish)."""
    from zmq.auth import CURVE_ALLOW_ANY, load_certificate
    from zmq.auth.thread import ThreadAuthenticator

    errors = curve_key_errors(cfg, section)
    if errors:  # `edged run` checked already; this start must not go on without them either
        raise OSError("; ".join(f"{field}: {reason}" for field, reason in errors))
    assert cfg.curve_server_secret_key_file is not None
    public, secret = load_certificate(cfg.curve_server_secret_key_file)
    auth = ThreadAuthenticator(sock.context)
    auth.start()
    location = CURVE_ALLOW_ANY if cfg.allow_any_client else cfg.curve_authorized_keys_dir
    auth.configure_curve(domain="*", location=location or "")
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth


def configure_curve_client(sock: zmq.Socket, server_key: Path, client_key: Path | None) -> None:
    """CURVE on a client socket: the server's public key file, and this client's secret key
    file (None: a throwaway key pair, for a server that allows any client)."""
    from zmq.auth import load_certificate

    if client_key is None:
        client_public, client_secret = zmq.curve_keypair()
    else:
        client_public, client_secret = load_certificate(str(client_key))
        if client_secret is None:
            raise ValueError(f"{client_key} holds no secret key (pass the .key_secret file)")
    server_public, _ = load_certificate(str(server_key))
    sock.curve_publickey, sock.curve_secretkey = client_public, client_secret
    sock.curve_serverkey = server_public


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
        configure_curve_client(sock, server_key=curve_keys[1], client_key=curve_keys[0])
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
