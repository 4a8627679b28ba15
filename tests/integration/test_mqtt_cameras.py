"""Several cameras through one MQTT bridge: a Home Assistant device per camera, each with its own
connection (client id, last will), state and discovery, against a real Mosquitto broker and a
real ZeroMQ publisher carrying each camera's topic."""

from __future__ import annotations

import json
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

# "front" is a prefix of "front-door": ZeroMQ delivers front-door's messages to front's
# subscription too, and the bridge must not count them as front's.
CAMERAS = (BridgedCamera("front", TrackingNames(("drive",), ())), BridgedCamera("front-door"))


def test_each_camera_is_its_own_device_with_its_own_state(tmp_path: Path):
    broker = Mosquitto(tmp_path / "broker")
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, client_id="house",
                     reconnect_min_s=0.2, reconnect_max_s=1, state_interval_s=0.5,
                     min_interval_s=0)  # fmt: skip
    with broker, Recorder(broker, "edged/#", "homeassistant/#") as seen:
        with running_bridge(cfg, tmp_path, CAMERAS) as pub:
            for camera in ("front", "front-door"):
                poll_until(lambda c=camera: seen.payload(f"edged/{c}/availability") == b"online",
                           30, broker.log_tail)  # fmt: skip
            seq = 0

            def both_counted() -> bool:
                nonlocal seq
                seq += 1
                pub.send_multipart([topic_for("front"), detections(seq, "front", people=2)])
                # Sent last: without the exact-topic check it is the newest message front's
                # subscription holds, and front's state would say 1.
                pub.send_multipart([topic_for("front-door"),
                                    detections(seq, "front-door", people=1)])  # fmt: skip
                people = {c: (seen.json(f"edged/{c}/state") or {}).get("counts", {}).get("person")
                          for c in ("front", "front-door")}  # fmt: skip
                return people == {"front": 2, "front-door": 1}

            poll_until(both_counted, 60, broker.log_tail)
            for _ in range(20):  # front's state never takes front-door's count
                seq += 1
                pub.send_multipart([topic_for("front"), detections(seq, "front", people=2)])
                pub.send_multipart([topic_for("front-door"),
                                    detections(seq, "front-door", people=1)])  # fmt: skip
            poll_until(lambda: len(seen.received("edged/front-door/state")) >= 3, 30,
                       broker.log_tail)  # fmt: skip
            front = [json.loads(p)["counts"]["person"] for p in seen.received("edged/front/state")]
            assert set(front) <= {0, 2}, front
            discovery = seen.matching("homeassistant/")
            for camera in ("front", "front_door"):
                assert f"homeassistant/sensor/edged_{camera}/person_count/config" in discovery
            # Tracking names are the camera's own: only front has the zone.
            assert any("edged_front/" in t and "drive" in t for t in discovery)
            assert not any("edged_front_door" in t and "drive" in t for t in discovery)
            log = broker.log_tail(200)
            assert "as house-front " in log and "as house-front-door " in log  # two connections
        for camera in ("front", "front-door"):  # each says offline on its own when the bridge stops
            poll_until(lambda c=camera: seen.payload(f"edged/{c}/availability") == b"offline",
                       30, broker.log_tail)  # fmt: skip


def test_client_ids_differ_per_camera_only_when_there_are_several():
    one = BridgeSetup(MqttConfig(host="h", client_id="house"), CAMERAS[:1], "e", "c")
    assert one.client_id("front") == "house"
    several = BridgeSetup(MqttConfig(host="h", client_id="house"), CAMERAS, "e", "c")
    assert [several.client_id(c.camera_id) for c in CAMERAS] == ["house-front", "house-front-door"]
    default = BridgeSetup(MqttConfig(host="h"), CAMERAS, "e", "c")
    assert default.client_id("front-door") == "edged-front-door"


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


def test_a_reload_that_changes_the_cameras_gives_the_bridge_the_new_set(tmp_path: Path):
    """A real bridge process and a real broker: after use_config with a camera added, a new
    bridge process speaks for it (its device appears) and the old cameras' stay."""
    from edged.integrations.mqtt.process import MqttBridgeProcess

    broker = Mosquitto(tmp_path / "broker")
    mqtt = {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.2,
            "reconnect_max_s": 1}  # fmt: skip
    before = parse_config({"cameras": [{"id": "a"}], "mqtt": mqtt})
    after = parse_config({"cameras": [{"id": "a"}, {"id": "b"}], "mqtt": mqtt})
    endpoints = (f"ipc://{tmp_path}/pub.sock", f"ipc://{tmp_path}/control.sock")
    with broker, Recorder(broker, "edged/#") as seen:
        bridge = MqttBridgeProcess(before, *endpoints)
        bridge.start()
        try:
            first = bridge.pid
            poll_until(lambda: seen.payload("edged/a/availability") == b"online", 30,
                       broker.log_tail)  # fmt: skip
            bridge.use_config(before)  # nothing changed: the same process
            assert bridge.pid == first
            bridge.use_config(after)
            assert bridge.pid not in (None, first)
            for camera in ("a", "b"):
                poll_until(lambda c=camera: seen.payload(f"edged/{c}/availability") == b"online",
                           30, broker.log_tail)  # fmt: skip
        finally:
            bridge.stop()
