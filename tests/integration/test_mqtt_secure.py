"""The bridge's connection settings against a real broker that wants TLS and a password.

The bridge runs in a thread here (``edged.integrations.mqtt.bridge.run``), fed by a real ZeroMQ
publisher with messages in the detections schema: what is under test is how it connects.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edged.integrations.config import MqttConfig
from edged.publish.schema import topic_for
from tests.daemon import poll_until
from tests.mqtt import Mosquitto, Recorder, detections, running_bridge
from tests.tls import self_signed_certificate

pytestmark = pytest.mark.integration


def test_tls_and_a_password_from_a_file(tmp_path: Path):
    cert, key = self_signed_certificate(tmp_path)
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "edged", "s3cret"],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    broker = Mosquitto(tmp_path / "broker", anonymous=False, extra_config=(
        f"certfile {cert}\nkeyfile {key}\npassword_file {passwords}\n"))  # fmt: skip
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, username="edged",
                     password_file=str(tmp_path / "pw"),
                     tls={"enabled": True, "ca_file": str(cert)}, reconnect_min_s=0.2,
                     reconnect_max_s=1, state_interval_s=0.5, min_interval_s=0)  # fmt: skip
    with (
        broker,
        running_bridge(cfg, tmp_path) as pub,
        Recorder(
            broker, "edged/#", "homeassistant/#", username="edged", password="s3cret", ca_file=cert
        ) as seen,
    ):
        poll_until(lambda: seen.payload("edged/cam/availability") == b"online", 30,
                   broker.log_tail)  # fmt: skip
        seq = 0

        def counted() -> bool:
            nonlocal seq
            seq += 1
            pub.send_multipart([topic_for("cam"), detections(seq)])
            return (seen.json("edged/cam/state") or {}).get("counts", {}).get("person") == 2

        poll_until(counted, 60, broker.log_tail)
        assert "homeassistant/sensor/edged_cam/person_count/config" in seen.matching("home")
    assert "not authorised" not in broker.log_tail().lower()


def test_a_wrong_password_is_refused_retried_and_stops_cleanly(tmp_path: Path):
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "edged", "s3cret"],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    broker = Mosquitto(tmp_path / "broker", anonymous=False,
                       extra_config=f"password_file {passwords}\n")  # fmt: skip
    (tmp_path / "pw").write_text("wrong\n")
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, username="edged",
                     password_file=str(tmp_path / "pw"), reconnect_min_s=0.2,
                     reconnect_max_s=0.5)  # fmt: skip
    with broker, running_bridge(cfg, tmp_path) as pub:
        for seq in range(200):  # read and dropped while refused: nothing is published
            pub.send_multipart([topic_for("cam"), detections(seq)])
        poll_until(lambda: broker.log_tail(200).count("not authorised") >= 2, 30,
                   broker.log_tail)  # fmt: skip
