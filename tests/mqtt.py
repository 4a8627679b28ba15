"""A real Mosquitto broker for tests, and an MQTT client that records what it sees.

``Mosquitto`` runs Debian's ``mosquitto`` binary on a free loopback port with a config of its
own (no persistence: a restart forgets every retained message, which is what the bridge must
cope with); a missing binary skips the test with the reason. ``Recorder`` subscribes with
paho and keeps every message and the last retained payload per topic.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import zmq
from paho.mqtt.enums import CallbackAPIVersion

from edged.integrations.config import MqttConfig
from edged.integrations.mqtt.bridge import run
from edged.integrations.mqtt.bridge_setup import BridgedCamera, BridgeSetup
from tests.daemon import free_port, poll_until, terminate


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )
    if found is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto; .ci/setup does)")
    return found


class Mosquitto:
    """``mosquitto -c <tmp>/mosquitto.conf`` on 127.0.0.1:<free port>; restartable."""

    def __init__(self, tmp_path: Path, extra_config: str = "", anonymous: bool = True) -> None:
        self.binary = mosquitto_binary()
        self.port = free_port()
        self.dir = Path(tmp_path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            "persistence false\n"
            # As root it would switch to the mosquitto user, who cannot read the test's files.
            + ("user root\n" if os.geteuid() == 0 else "")
            + "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            + extra_config
        )
        self.log_path = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        poll_until(self._accepting, 20, lambda: f"mosquitto not listening: {self.log_tail()}")
        return self

    def _accepting(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited {self.proc.returncode}: {self.log_tail()}")
        with socket.socket() as probe:
            probe.settimeout(1.0)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Recorder:
    """Subscribes to ``topics`` (reconnecting by itself) and records every message."""

    def __init__(self, broker: Mosquitto, *topics: str, username: str | None = None,
                 password: str | None = None, ca_file: Path | None = None) -> None:  # fmt: skip
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []  # (topic, payload, retained)
        self.last: dict[str, bytes] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
        if username:
            self.client.username_pw_set(username, password)
        if ca_file:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]
        self.topics = topics

        def on_connect(client: mqtt.Client, *_: Any) -> None:
            for topic in self.topics:
                client.subscribe(topic, qos=1)

        def on_message(_client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
            with self.lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
                self.last[msg.topic] = msg.payload

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect_async("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def payload(self, topic: str) -> bytes | None:
        with self.lock:
            return self.last.get(topic)

    def json(self, topic: str) -> Any:
        raw = self.payload(topic)
        return None if raw is None else json.loads(raw)

    def received(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def matching(self, prefix: str) -> dict[str, bytes]:
        with self.lock:
            return {t: p for t, p in self.last.items() if t.startswith(prefix)}

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detections(seq: int, camera_id: str = "cam", people: int | None = None) -> bytes:
    """A detections message (the published schema) with ``people`` persons (default seq % 3)."""
    people = seq % 3 if people is None else people
    return json.dumps({
        "schema_version": 1, "camera_id": camera_id, "seq": seq, "timestamp": time.time(),
        "source": {"width": 64, "height": 48},
        "model": {"name": "m", "variant": "v", "backend": "onnxruntime", "precision": "fp32"},
        "latency_ms": {"end_to_end": 5.0},
        "detections": [{"label": "person", "class_id": 0, "confidence": 0.9,
                        "box": [1, 2, 3, 4]}] * people,
    }).encode()  # fmt: skip


@contextmanager
def running_bridge(cfg: MqttConfig, tmp_path: Path,
                   cameras: tuple[BridgedCamera, ...] = (BridgedCamera("cam"),),
                   ) -> Iterator[zmq.Socket]:  # fmt: skip
    """The bridge in a thread (``edged.integrations.mqtt.bridge.run``), subscribed to the real
    ZeroMQ PUB socket it yields; stopped on exit, which must be a clean exit."""
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path / 'pub.sock'}"
    pub.bind(endpoint)
    stop = threading.Event()
    result: list[int] = []
    control = f"ipc://{tmp_path / 'no-daemon.sock'}"  # no daemon: no variant select
    setup = BridgeSetup(cfg, cameras, endpoint, control)
    thread = threading.Thread(target=lambda: result.append(run(setup, stop)), daemon=True)
    thread.start()
    try:
        yield pub
    finally:
        stop.set()
        thread.join(15)
        pub.close(0)
    assert result == [0]
