"""The MQTT / Home Assistant bridge of a real daemon, on the shared video, with a real broker.

What Home Assistant would do is done by hand here: read the retained discovery messages, check
each against the configuration variables Home Assistant documents for its component
(https://www.home-assistant.io/integrations/sensor.mqtt/, binary_sensor.mqtt/, select.mqtt/
and the discovery page's ``device``/``origin`` blocks), render the ``value_template`` of each
entity with Jinja against the state payload, and publish a variant on the select's
``command_topic``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
import psutil
import pytest
import zmq
import zmq.auth

from edged.config import ConfigError, parse_config
from edged.integrations.mqtt.discovery import discovery_messages
from tests.daemon import VIDEO, Daemon, poll_until, require
from tests.mqtt import Mosquitto, Recorder

pytestmark = pytest.mark.integration

# Configuration variables of MQTT entities, from Home Assistant's documentation.
COMMON_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "default_entity_id", "device", "enabled_by_default", "encoding", "entity_category",
    "entity_picture", "icon", "json_attributes_template", "json_attributes_topic", "name",
    "object_id", "origin", "payload_available", "payload_not_available", "platform", "qos",
    "unique_id", "value_template",
}  # fmt: skip
COMPONENT_KEYS = {
    "sensor": COMMON_KEYS | {
        "device_class", "expire_after", "force_update", "last_reset_value_template", "options",
        "state_class", "state_topic", "suggested_display_precision", "unit_of_measurement",
    },
    "binary_sensor": COMMON_KEYS | {
        "device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on",
        "state_topic",
    },
    "select": COMMON_KEYS | {
        "command_template", "command_topic", "optimistic", "options", "retain", "state_topic",
    },
}  # fmt: skip
REQUIRED_KEYS = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"},
                 "select": {"command_topic", "options"}}  # fmt: skip
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
# HA's device classes and state classes used here (from its sensor / binary_sensor docs).
SENSOR_DEVICE_CLASSES = {"duration"}
BINARY_DEVICE_CLASSES = {"occupancy", "motion", "presence"}
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
ENTITY_CATEGORIES = {"config", "diagnostic"}

LABELS = ["person", "car", "bicycle"]
CAMERA = "street"


def mqtt_config(broker: Mosquitto, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": broker.port, "labels": LABELS,
            "state_interval_s": 1.0, "min_interval_s": 0, "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0, "keepalive_s": 30, **extra}  # fmt: skip
    # keepalive 30: a broker or bridge slow to answer a ping on a busy machine is no lost
    # connection (the counts of connects are asserted); a kill is seen by the TCP close.


def manifest_args(variant_dir: Path) -> list[str]:
    return ["--manifest", str(variant_dir / "yolov5n.yaml"), "--models-dir", str(variant_dir),
            "--variant", "fp32"]  # fmt: skip


def render(template: str, state: dict[str, Any]) -> str:
    return jinja2.Environment().from_string(template).render(value_json=state).strip()


def check_discovery(configs: dict[str, bytes], state: dict[str, Any]) -> dict[str, dict]:
    """Every discovery payload against HA's documented keys; returns them by unique_id."""
    by_id: dict[str, dict] = {}
    for topic, raw in configs.items():
        prefix, component, node, object_id, leaf = topic.split("/")
        assert (prefix, leaf) == ("homeassistant", "config"), topic
        assert component in COMPONENT_KEYS, topic
        payload = json.loads(raw)
        unknown = set(payload) - COMPONENT_KEYS[component]
        assert not unknown, f"{topic}: keys Home Assistant does not document: {unknown}"
        assert REQUIRED_KEYS[component] <= set(payload), topic
        assert set(payload["device"]) <= DEVICE_KEYS and payload["device"]["identifiers"]
        assert set(payload["origin"]) <= ORIGIN_KEYS and payload["origin"]["name"]
        assert payload["availability_topic"] == f"edged/{CAMERA}/availability"
        assert payload["unique_id"] not in by_id, "unique_id used twice"
        assert payload["unique_id"] == f"{node}_{object_id}" and node == f"edged_{CAMERA}"
        assert payload.get("device_class") in {
            None,
            *(SENSOR_DEVICE_CLASSES if component == "sensor" else BINARY_DEVICE_CLASSES),
        }
        assert payload.get("state_class") in {None, *STATE_CLASSES}
        assert payload.get("entity_category") in {None, *ENTITY_CATEGORIES}
        assert payload["qos"] in (0, 1, 2)
        rendered = render(payload["value_template"], state)
        if component == "binary_sensor":
            assert rendered in (payload["payload_on"], payload["payload_off"])
        if component == "select":
            assert rendered in payload["options"]
        by_id[payload["unique_id"]] = {**payload, "component": component, "rendered": rendered}
    return by_id


def wait_for_discovery(ha: Recorder, daemon: Daemon, config: dict[str, Any]) -> dict[str, bytes]:
    """Every discovery config the bridge announces, once all are in (not just the first few).

    The retained configs come after the state when the recorder joined late, one by one, and
    the bridge announces again (with the variant select) once it got the variants from the
    daemon: a set read as soon as it is not empty can be partial.
    """
    variants = [str(v) for v in daemon.ctl("status").get("variants") or []]
    cfg = parse_config(config).mqtt
    assert cfg is not None
    expected = {topic for topic, _ in discovery_messages(cfg, CAMERA, variants)}

    def complete() -> dict[str, bytes] | None:
        configs = ha.matching("homeassistant/")
        return configs if set(configs) == expected else None

    def failure() -> str:
        got = sorted(ha.matching("homeassistant/"))
        return f"discovery configs {got} != {sorted(expected)}\n{daemon.log_tail()}"

    return poll_until(complete, 60, failure)


def bridge_pid(daemon: Daemon) -> int:
    for proc in daemon.processes():
        try:
            if proc.cmdline()[:1] == ["edged: mqtt"]:
                return proc.pid
        except psutil.Error:
            continue
    raise AssertionError(daemon.log_tail())


def test_home_assistant_entities_follow_the_video(tmp_path: Path, variant_dir: Path):
    broker = Mosquitto(tmp_path / "broker")
    config = {"camera_id": CAMERA, "mqtt": mqtt_config(broker)}
    # The daemon starts before the broker: the bridge keeps trying, the pipeline does not care.
    with Daemon(tmp_path / "edged", "--source", str(require(VIDEO)), "--loop",
                *manifest_args(variant_dir), config=config) as daemon:  # fmt: skip
        detections = daemon.subscriber()
        daemon.wait_ready(120)
        assert daemon.receive(detections) is not None
        with broker, Recorder(broker, "edged/#", "homeassistant/#") as ha:
            state_topic = f"edged/{CAMERA}/state"
            poll_until(lambda: ha.payload(f"edged/{CAMERA}/availability") == b"online", 60,
                       lambda: daemon.log_tail() + broker.log_tail())  # fmt: skip

            # States follow the video: each state names the frame (seq) it counted; its counts
            # are that frame's detections, as the ZeroMQ subscriber got them.
            def enough() -> bool:
                states = [json.loads(p) for p in ha.received(state_topic)]
                return len({s["counts"]["person"] for s in states}) >= 2 and len(states) >= 15

            poll_until(enough, 120, daemon.log_tail)
            frames = {m["seq"]: m for m in Daemon.drain(detections)}
            states = [json.loads(p) for p in ha.received(state_topic)]
            checked = 0
            for state in states:
                frame = frames.get(state["seq"])
                if frame is None:  # before this subscriber joined, or after the drain
                    continue
                labels = Counter(d["label"] for d in frame["detections"])
                assert state["counts"] == {**dict.fromkeys(LABELS, 0), **labels}, state
                assert state["variant"] == frame["model"]["variant"] == "fp32"
                checked += 1
            assert checked >= 10, (checked, len(states))
            assert states[-1]["fps"] > 0 and states[-1]["latency_ms"] > 0

            # Discovery, retained: what Home Assistant reads when it (re)starts.
            configs = wait_for_discovery(ha, daemon, config)
            entities = check_discovery(configs, states[-1])
            node = f"edged_{CAMERA}"
            assert {f"{node}_{label}_{kind}" for label in LABELS
                    for kind in ("count", "detected")} <= set(entities)  # fmt: skip
            person = entities[f"{node}_person_count"]
            assert person["rendered"] == str(states[-1]["counts"]["person"])
            select = entities[f"{node}_variant"]
            assert {"fp32", "static", "dynamic"} <= set(select["options"])
            assert select["rendered"] == "fp32"
            with Recorder(broker, "homeassistant/#") as late:  # retained for a newcomer
                poll_until(lambda: late.matching("homeassistant/") == configs, 60)

            # The select swaps the model through the daemon's control path.
            ha.publish(select["command_topic"], "dynamic")
            poll_until(lambda: (ha.json(state_topic) or {}).get("variant") == "dynamic", 120,
                       daemon.log_tail)  # fmt: skip
            assert daemon.ctl("status")["model"]["variant"] == "dynamic"
            assert ha.json(state_topic)["precision"] == "int8-dynamic"
            # A variant the manifest cannot load is refused; the select shows what serves.
            ha.publish(select["command_topic"], "truncated")
            poll_until(lambda: "swap to truncated over MQTT refused" in daemon.log_text(), 120,
                       daemon.log_tail)  # fmt: skip
            assert daemon.ctl("status")["model"]["variant"] == "dynamic"

        assert daemon.stop() == 0


def test_broker_restart_and_bridge_crash_are_survived(tmp_path: Path):
    broker = Mosquitto(tmp_path / "broker")
    # Readiness is asserted while the broker and the bridge come and go, not the frame age:
    # a generous window, so a slow moment of a busy machine is not read as not ready.
    config = {"camera_id": CAMERA, "mqtt": mqtt_config(broker), "http": {"ready_max_age_s": 30}}
    with broker, Daemon(tmp_path / "edged", "--source", str(require(VIDEO)), "--loop",
                        config=config) as daemon:  # fmt: skip
        availability = f"edged/{CAMERA}/availability"
        state_topic = f"edged/{CAMERA}/state"
        daemon.wait_ready(120)
        with Recorder(broker, "edged/#", "homeassistant/#") as ha:
            poll_until(lambda: ha.payload(availability) == b"online", 60, daemon.log_tail)
            poll_until(lambda: ha.json(state_topic), 60, daemon.log_tail)
            # Retained messages of the two subscriptions arrive one filter after the other:
            # the state (edged/#) can be in before the discovery configs (homeassistant/#).
            configs = wait_for_discovery(ha, daemon, config)
        scrape = daemon.metrics()
        assert scrape.value("edged_mqtt_connected") == 1
        assert scrape.value("edged_mqtt_connects_total") == 1
        assert scrape.value("edged_mqtt_messages_total", outcome="published") > len(configs)

        # The broker goes away (and, without persistence, forgets every retained message).
        broker.stop()
        detections = daemon.subscriber()
        scrape = daemon.wait_metric("edged_mqtt_connected", lambda v: v == 0)
        published = scrape.value("edged_frames_total", stage="publish", outcome="ok")
        sent = scrape.value("edged_mqtt_messages_total", outcome="published")
        # ZeroMQ detections are unaffected while the broker is down, and nothing is queued
        # for the broker meanwhile: no message is handed to the MQTT client at all.
        for _ in range(20):
            assert daemon.receive(detections, timeout=10) is not None
        scrape = daemon.wait_metric("edged_frames_total", lambda v: v > published + 20,
                                    stage="publish", outcome="ok")  # fmt: skip
        assert scrape.value("edged_mqtt_messages_total", outcome="published") == sent
        assert daemon.probe("/readyz")[0] == 200
        broker.start()  # same port
        with Recorder(broker, "edged/#", "homeassistant/#") as ha:
            poll_until(lambda: ha.payload(availability) == b"online", 60, daemon.log_tail)
            poll_until(lambda: ha.matching("homeassistant/") == configs, 60, daemon.log_tail)
            seq = poll_until(lambda: (ha.json(state_topic) or {}).get("seq"), 60)
            poll_until(lambda: ha.json(state_topic)["seq"] > seq, 60)
            assert daemon.metrics().value("edged_mqtt_connects_total") >= 2

            # The bridge process dies: the broker sends its last will, the daemon (still
            # publishing) starts a new bridge, which says online again.
            os.kill(bridge_pid(daemon), signal.SIGKILL)
            poll_until(lambda: b"offline" in ha.received(availability), 60, daemon.log_tail)
            poll_until(lambda: ha.payload(availability) == b"online", 60, daemon.log_tail)
            assert daemon.probe("/readyz")[0] == 200
            assert daemon.metrics().value("edged_mqtt_bridge_restarts_total") == 1

            # A clean stop says offline (retained) before the bridge disconnects.
            assert daemon.stop() == 0
            poll_until(lambda: ha.payload(availability) == b"offline", 30)


def test_bridge_subscribes_to_a_curve_publisher(tmp_path: Path):
    """A publisher admitting only listed CURVE keys: the bridge uses its own key pair."""
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    keys.mkdir()
    allowed.mkdir()
    _server_public, server_secret = zmq.auth.create_certificates(str(keys), "server")
    client_public, client_secret = zmq.auth.create_certificates(str(keys), "bridge")
    shutil.copy(client_public, allowed)
    broker = Mosquitto(tmp_path / "broker")
    config = {
        "camera_id": CAMERA,
        "publish": {"curve_server_secret_key_file": server_secret,
                    "curve_authorized_keys_dir": str(allowed)},
        "mqtt": mqtt_config(broker, curve_client_secret_key_file=client_secret),
    }  # fmt: skip
    with broker, Daemon(tmp_path / "edged", "--source", str(require(VIDEO)), "--loop",
                        config=config) as daemon, Recorder(broker, "edged/#") as ha:  # fmt: skip
        daemon.wait_ready(120)
        poll_until(lambda: (ha.json(f"edged/{CAMERA}/state") or {}).get("fps", 0) > 0, 60,
                   daemon.log_tail)  # fmt: skip
        assert daemon.stop() == 0
    # Without the bridge's key the config is refused, naming the field.
    del config["mqtt"]["curve_client_secret_key_file"]
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert info.value.errors[0][0] == "mqtt.curve_client_secret_key_file"


# The street video: people and bicycles ride right across x = 0.85, the car goes left.
TRACKING = {
    "enabled": True,
    "lines": [{"name": "east", "points": [[0.85, 0.0], [0.85, 1.0]]}],
    "zones": [{"name": "lot", "polygon": [[0.2, 0.0], [1.0, 0.0], [1.0, 0.6], [0.2, 0.6]]}],
}


def test_tracks_zones_and_line_crossings(tmp_path: Path):
    """With tracking, the state carries zone occupancy and line crossings from the events
    topic: at the end of the video they are what a subscriber counts from the same events."""
    broker = Mosquitto(tmp_path / "broker")
    config = {"camera_id": CAMERA, "tracking": TRACKING, "mqtt": mqtt_config(broker)}
    # Two subscribers before the first frame: the bridge and this test (lossless, so the
    # events of every frame reach both).
    with broker, Recorder(broker, "edged/#", "homeassistant/#") as ha, Daemon(
        tmp_path / "edged", "--source", str(require(VIDEO)), "--mode", "lossless",
        "--wait-subscribers", "2", config=config,
    ) as daemon:  # fmt: skip
        sub = daemon.subscriber(b"events.")
        sub.setsockopt(zmq.SUBSCRIBE, b"detections.")
        state_topic = f"edged/{CAMERA}/state"
        occupied = False
        crossings: Counter[tuple[str, str]] = Counter()
        inside: set[int] = set()
        deadline = time.monotonic() + 300
        while True:
            got = Daemon.receive(sub, timeout=5)
            if got is None:  # everything published so far is read: done once the video ended
                if "source ended" in daemon.log_text():
                    break
                assert time.monotonic() < deadline, daemon.log_tail()
                continue
            topic, message = got
            if topic.startswith(b"events."):
                kind = message["type"]
                if kind == "line_cross":
                    crossings[(message["line"], message["direction"])] += 1
                elif kind == "zone_enter":
                    inside.add(message["track_id"])
                elif kind in ("zone_exit", "track_end"):
                    inside.discard(message["track_id"])
            state = ha.json(state_topic) or {}
            occupied = occupied or state.get("zones", {}).get("lot", 0) > 0
        assert occupied, "the zone never had anyone in it"
        expected = {"east": {d: crossings[("east", d)] for d in ("left_to_right", "right_to_left")}}
        assert sum(crossings.values()) >= 2, crossings

        def final() -> bool:
            state = ha.json(state_topic) or {}
            return state.get("lines") == expected and state.get("zones") == {"lot": len(inside)}

        poll_until(final, 60, lambda: f"{ha.json(state_topic)} != {expected}, lot {len(inside)}")
        entities = check_discovery(ha.matching("homeassistant/"), ha.json(state_topic))
        node = f"edged_{CAMERA}"
        assert entities[f"{node}_line_east_left_to_right"]["rendered"] == str(
            expected["east"]["left_to_right"])  # fmt: skip
        assert entities[f"{node}_line_east_left_to_right"]["state_class"] == "total_increasing"
        assert entities[f"{node}_zone_lot"]["rendered"] == str(len(inside))
        assert f"{node}_tracks" in entities
        assert daemon.stop() == 0
