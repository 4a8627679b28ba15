"""A tcp:// control endpoint with CURVE, on the running daemon, through real ZeroMQ clients.

Keys in the authorized directory get answers and others get none; ``allow_any_client: true``
(the explicit replacement of the old ``curve_authorized_keys_dir: "*"``) answers any key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from zmq.auth import create_certificates

from edged.control import call
from tests.daemon import Daemon, free_port
from tests.tools.models import tiny_yolov8

pytestmark = pytest.mark.integration


def make_keys(root: Path) -> dict[str, Path]:
    root.mkdir()
    for name in ("server", "client", "stranger"):
        create_certificates(root, name)
    clients = root / "clients"
    clients.mkdir()
    (clients / "client.key").write_bytes((root / "client.key").read_bytes())
    return {name: root / name for name in ("server", "client", "stranger")} | {"clients": clients}


def ask(endpoint: str, keys: dict[str, Path], who: str, timeout: float) -> dict | None:
    """A status request with ``who``'s key pair; None when no reply came within ``timeout``."""
    pair = (keys[who].with_suffix(".key_secret"), keys["server"].with_suffix(".key"))
    try:
        return call(endpoint, "status", timeout_s=timeout, curve_keys=pair)
    except TimeoutError:
        return None


@pytest.mark.parametrize("any_client", [False, True])
def test_curve_control_answers_the_keys_it_should(tmp_path: Path, any_client: bool) -> None:
    keys = make_keys(tmp_path / "keys")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    control: dict = {
        "endpoint": endpoint,
        "curve_server_secret_key_file": str(keys["server"]) + ".key_secret",
    }
    if any_client:
        control["allow_any_client"] = True
    else:
        control["curve_authorized_keys_dir"] = str(keys["clients"])
    model = tiny_yolov8(tmp_path / "tiny.onnx")
    with Daemon(
        tmp_path / "d", "--source", "synthetic:", model=model, config={"control": control}
    ) as daemon:
        daemon.wait_ready()
        reply = ask(endpoint, keys, "client", timeout=60)
        assert reply is not None and reply["ok"], daemon.log_tail()
        # A refused key gets no reply at all, however long: 3 s only bounds that wait. An
        # admitted one is answered once the machine gets to it (60 s bounds a hang).
        stranger = ask(endpoint, keys, "stranger", timeout=60 if any_client else 3)
        if any_client:
            assert stranger is not None and stranger["ok"]
        else:
            assert stranger is None
        assert daemon.stop() == 0
