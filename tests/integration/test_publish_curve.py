"""The publisher with CURVE keys on a running daemon (issue 19 item 1): the real
`edged subscribe --server-key --client-key` gets detections; a plain subscriber and an unknown
key fail the handshake (seen on the client's monitor socket: no waiting for silence)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from edged.control import configure_curve_client
from tests.daemon import REPO_ROOT, Daemon
from tests.integration.test_control_curve import make_keys

pytestmark = pytest.mark.integration
HANDSHAKES = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def first_handshake(sock: zmq.Socket, endpoint: str, timeout_s: float = 60.0) -> int:
    """Connect ``sock`` and return the first handshake event its monitor reports."""
    monitor = sock.get_monitor_socket(HANDSHAKES)
    try:
        sock.connect(endpoint)
        assert monitor.poll(int(timeout_s * 1000)), "no handshake at all"
        return recv_monitor_message(monitor)["event"]
    finally:
        sock.disable_monitor()
        monitor.close(0)


def sub(keys: dict[str, Path] | None = None, who: str = "") -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    if keys is not None:
        secret = keys[who].with_suffix(".key_secret")
        configure_curve_client(sock, keys["server"].with_suffix(".key"), secret)
    return sock


def test_a_curve_publisher_serves_authorized_keys_only(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    publish = {
        "curve_server_secret_key_file": str(keys["server"]) + ".key_secret",
        "curve_authorized_keys_dir": str(keys["clients"]),
    }
    with Daemon(tmp_path / "d", "--source", "synthetic:", config={"publish": publish}) as daemon:
        daemon.wait_ready()
        argv = [sys.executable, "-m", "edged.cli", "subscribe", daemon.publish_endpoint,
                "--server-key", str(keys["server"]) + ".key",
                "--client-key", str(keys["client"]) + ".key_secret", "--count", "2",
                "--timeout", "60"]  # fmt: skip
        done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr + daemon.log_tail()
        assert done.stdout.count("#") == 2
        plain, stranger = sub(), sub(keys, "stranger")
        try:
            assert first_handshake(plain, daemon.publish_endpoint) != (
                zmq.EVENT_HANDSHAKE_SUCCEEDED
            )
            assert first_handshake(stranger, daemon.publish_endpoint) == (
                zmq.EVENT_HANDSHAKE_FAILED_AUTH
            )
        finally:
            plain.close(0)
            stranger.close(0)
        assert daemon.stop() == 0


def test_allow_any_client_takes_a_throwaway_key_but_not_plain_text(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    publish = {
        "curve_server_secret_key_file": str(keys["server"]) + ".key_secret",
        "allow_any_client": True,
    }
    with Daemon(tmp_path / "d", "--source", "synthetic:", config={"publish": publish}) as daemon:
        daemon.wait_ready()
        endpoint = daemon.publish_endpoint
        argv = [sys.executable, "-m", "edged.cli", "subscribe", endpoint, "--server-key",
                str(keys["server"]) + ".key", "--count", "1", "--timeout", "60"]  # fmt: skip
        done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr + daemon.log_tail()
        plain = sub()
        try:
            assert first_handshake(plain, endpoint) != zmq.EVENT_HANDSHAKE_SUCCEEDED
        finally:
            plain.close(0)
        assert daemon.stop() == 0
