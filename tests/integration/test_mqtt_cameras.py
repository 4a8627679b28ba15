"""Several cameras through one MQTT bridge: a Home Assistant device per camera, each with its own
connection (client id, last will), state and discovery, against a real Mosquitto broker and a
real ZeroMQ publisher carrying each camera's topic."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.config import parse_config
from edged.integrations.config import MqttConfig
from edged.integrations.mqtt.bridge_setup import BridgedCamera, BridgeSetup, TrackingNames
from edged.integrations.mqtt.process import bridged_cameras
from edged.publish.schema import topic_for
from tests.daemon import poll_until
from tests.mqtt import Mosquitto, Recorder, detections, running_bridge

pytestmark = pytest.mark.integration

CAMERAS = (BridgedCamera("front", TrackingNames(("drive",), ())), BridgedCamera("back"))


def test_each_camera_is_its_own_device_with_its_own_state(tmp_path: Path):
    broker = Mosquitto(tmp_path / "broker")
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, client_id="house",
                     reconnect_min_s=0.2, reconnect_max_s=1, state_interval_s=0.5,
                     min_interval_s=0)  # fmt: skip
    with broker, Recorder(broker, "edged/#", "homeassistant/#") as seen:
        with running_bridge(cfg, tmp_path, CAMERAS) as pub:
            for camera in ("front", "back"):
                poll_until(lambda c=camera: seen.payload(f"edged/{c}/availability") == b"online",
                           30, broker.log_tail)  # fmt: skip
            seq = 0

            def both_counted() -> bool:
                nonlocal seq
                seq += 1
                pub.send_multipart([topic_for("front"), detections(seq, "front", people=2)])
                pub.send_multipart([topic_for("back"), detections(seq, "back", people=1)])
                people = {c: (seen.json(f"edged/{c}/state") or {}).get("counts", {}).get("person")
                          for c in ("front", "back")}  # fmt: skip
                return people == {"front": 2, "back": 1}

            poll_until(both_counted, 30, broker.log_tail)
            discovery = seen.matching("homeassistant/")
            for camera in ("front", "back"):
                assert f"homeassistant/sensor/edged_{camera}/person_count/config" in discovery
            # Tracking names are the camera's own: only front has the zone.
            assert any("edged_front" in t and "drive" in t for t in discovery)
            assert not any("edged_back" in t and "drive" in t for t in discovery)
            log = broker.log_tail(200)
            assert "as house-front" in log and "as house-back" in log  # two connections
        for camera in ("front", "back"):  # each says offline on its own when the bridge stops
            poll_until(lambda c=camera: seen.payload(f"edged/{c}/availability") == b"offline",
                       30, broker.log_tail)  # fmt: skip


def test_client_ids_differ_per_camera_only_when_there_are_several():
    one = BridgeSetup(MqttConfig(host="h", client_id="house"), CAMERAS[:1], "e", "c")
    assert one.client_id("front") == "house"
    several = BridgeSetup(MqttConfig(host="h", client_id="house"), CAMERAS, "e", "c")
    assert [several.client_id(c.camera_id) for c in CAMERAS] == ["house-front", "house-back"]
    default = BridgeSetup(MqttConfig(host="h"), CAMERAS, "e", "c")
    assert default.client_id("back") == "edged-back"


def test_the_bridge_speaks_for_every_configured_camera():
    config = parse_config({
        "tracking": {"enabled": True, "lines": [{"name": "gate", "points": [[0, 0.5], [1, 0.5]]}]},
        "cameras": [{"id": "a"}, {"id": "b", "tracking": {"enabled": False}}],
    })  # fmt: skip
    a, b = bridged_cameras(config)
    assert (a.camera_id, a.tracking) == ("a", TrackingNames((), ("gate",)))
    assert (b.camera_id, b.tracking) == ("b", None)
    (single,) = bridged_cameras(parse_config({"camera_id": "door"}))
    assert single.camera_id == "door"
