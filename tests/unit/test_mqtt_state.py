"""The MQTT bridge's pure parts: the camera state and when it is due, discovery, the config."""

from __future__ import annotations

import itertools
import json

import pytest

from edged.config import ConfigError, parse_config
from edged.integrations.config import MqttConfig
from edged.integrations.mqtt.bridge import read_password
from edged.integrations.mqtt.discovery import Topics, discovery_messages, slug
from edged.integrations.mqtt.state import CameraState


def message(seq: int, labels: list[str], variant: str = "fp32", t: float = 0.0) -> dict:
    return {
        "seq": seq,
        "timestamp": 1000.0 + t,
        "model": {"name": "yolov5n", "variant": variant, "backend": "onnxruntime",
                  "precision": "fp32"},
        "latency_ms": {"infer": 40.0, "end_to_end": 50.0},
        "detections": [{"label": label, "confidence": 0.9} for label in labels],
    }  # fmt: skip


def test_counts_cover_the_configured_labels_and_others():
    state = CameraState(("person", "car"))
    state.update(message(0, ["person", "person", "dog"]), now=0.0)
    snap = state.snapshot(0.0)
    assert snap["counts"] == {"person": 2, "car": 0, "dog": 1}
    assert snap["total"] == 3 and snap["variant"] == "fp32" and snap["seq"] == 0


def test_fps_from_seq_and_frame_times_even_when_messages_were_skipped():
    state = CameraState(("person",))
    for i in range(0, 40, 4):  # every 4th frame of a 10 fps camera reached the bridge
        state.update(message(i, [], t=i / 10), now=i / 10)
    assert state.fps(3.6) == pytest.approx(10.0)
    assert state.snapshot(3.6)["latency_ms"] == 50.0
    assert state.fps(100.0) == 0.0  # nothing recent
    restarted = CameraState(("person",))
    restarted.update(message(50, [], t=0), now=0)
    restarted.update(message(0, [], t=1), now=1)  # the daemon restarted: seq went back
    assert restarted.fps(1.0) == 0.0


def test_a_change_goes_out_at_once_the_rest_with_the_refresh():
    state = CameraState(("person",), state_interval_s=5.0, min_interval_s=0.2)
    state.update(message(0, ["person"]), now=0.0)
    assert state.due(0.0) is not None  # first state
    state.update(message(1, ["person"]), now=0.1)
    assert state.due(0.1) is None  # nothing changed
    state.update(message(2, ["person", "person"]), now=0.15)
    assert state.due(0.15) is None  # changed, but within min_interval_s
    assert state.due(0.25)["counts"]["person"] == 2
    state.update(message(3, ["person", "person"]), now=1.0)
    assert state.due(1.0) is None
    assert state.due(5.3) is not None  # the periodic refresh (FPS, latency)
    state.update(message(4, ["person", "person"], variant="static"), now=5.4)
    assert state.due(5.6)["variant"] == "static"
    state.forget_published()
    assert state.due(5.7) is not None  # after a reconnect everything goes out again


def test_nothing_is_detected_now_once_frames_stop():
    state = CameraState(("person",), state_interval_s=1.0)
    state.update(message(0, ["person"]), now=0.0)
    assert state.snapshot(4.0)["counts"] == {"person": 1}
    assert state.snapshot(6.0)["counts"] == {"person": 0}  # stale after 5 s


def test_discovery_topics_ids_and_templates():
    cfg = MqttConfig(host="b", labels=["person", "traffic light"])
    messages = dict(discovery_messages(cfg, "cam.1", ["fp32", "static"]))
    node = "edged_cam_1"
    assert f"homeassistant/sensor/{node}/traffic_light_count/config" in messages
    select = messages[f"homeassistant/select/{node}/variant/config"]
    assert (
        select["command_topic"] == "edged/cam.1/variant/set" == Topics.of(cfg, "cam.1").variant_set
    )
    assert select["options"] == ["fp32", "static"]
    count = messages[f"homeassistant/sensor/{node}/traffic_light_count/config"]
    assert count["value_template"] == '{{ value_json.counts["traffic light"] | default(0) }}'
    assert len({m["unique_id"] for m in messages.values()}) == len(messages)
    assert all(m["availability_topic"] == "edged/cam.1/availability" for m in messages.values())
    # Without variants (a single model file) there is nothing to select.
    assert not any("/select/" in t for t, _ in discovery_messages(cfg, "cam", []))
    assert slug("Cam-1.x") == "cam_1_x"
    json.dumps(messages)  # all plain JSON


@pytest.mark.parametrize(
    ("section", "field", "reason"),
    [
        ({"host": "b", "password_file": "/p"}, "mqtt", "needs a username"),
        ({"host": "b", "base_topic": "a/#"}, "mqtt.base_topic", "wildcards"),
        ({"host": "b", "base_topic": "/a"}, "mqtt.base_topic", "wildcards"),
        ({"host": "b", "labels": ["per}}son"]}, "mqtt.labels", "letters, digits"),
        ({"host": "b", "qos": 3}, "mqtt.qos", ""),
        ({"host": "b", "tls": {"enabled": True, "cert_file": "c"}}, "mqtt.tls", "go together"),
        ({"port": 1883}, "mqtt.host", "required"),
        ({"host": "b", "prot": 1}, "mqtt.prot", "did you mean 'port'?"),
        ({"host": "b", "reconnect_min_s": 5, "reconnect_max_s": 1}, "mqtt", "reconnect_max_s"),
    ],
)
def test_mqtt_section_errors_name_the_field(section: dict, field: str, reason: str):
    with pytest.raises(ConfigError) as info:
        parse_config({"mqtt": section})
    errors = dict(info.value.errors)
    assert field in errors, errors
    assert reason.lower() in errors[field].lower()


def test_no_mqtt_section_no_bridge():
    assert parse_config({}).mqtt is None
    assert parse_config({"mqtt": {"host": "broker"}}).mqtt.port == 1883


def test_password_is_the_first_line_of_its_file(tmp_path):
    path = tmp_path / "pw"
    path.write_text("s3cret\nignored\n")
    assert read_password(str(path)) == "s3cret"
    with pytest.raises(ValueError, match=r"mqtt\.password_file"):
        read_password(str(tmp_path / "missing"))


def test_zone_occupancy_and_line_crossings_from_events():
    state = CameraState(("person",)).track(("lot",), ("east",))
    for event in (
        {"type": "zone_enter", "track_id": 1, "zone": "lot"},
        {"type": "zone_enter", "track_id": 2, "zone": "lot"},
        {"type": "zone_enter", "track_id": 3, "zone": "elsewhere"},  # not configured: ignored
        {"type": "zone_exit", "track_id": 1, "zone": "lot"},
        {"type": "line_cross", "track_id": 2, "line": "east", "direction": "left_to_right"},
        {"type": "line_cross", "track_id": 4, "line": "east", "direction": "sideways"},
    ):
        state.apply_event(event)
    state.update(
        {
            **message(0, ["person"]),
            "detections": [
                {"label": "person", "track_id": 2},
                {"label": "person", "track_id": None},
            ],
        },
        now=0.0,
    )
    snap = state.due(0.0)
    assert snap["zones"] == {"lot": 1} and snap["tracks"] == 1
    assert snap["lines"] == {"east": {"left_to_right": 1, "right_to_left": 0}}
    state.apply_event({"type": "track_end", "track_id": 2, "reason": "lost"})  # ended inside
    assert state.due(0.3)["zones"] == {"lot": 0}  # a change goes out at once
    assert "zones" not in CameraState(("person",)).snapshot(0.0)  # no tracking: no fields


class _Exited:
    """A bridge process that has exited (what check() sees of a crashed one)."""

    exitcode = 1
    pid = 0

    def is_alive(self) -> bool:
        return False


def test_a_dead_bridge_is_restarted_with_a_growing_wait_reset_after_a_stable_run():
    from edged.integrations.mqtt.process import MqttBridgeProcess

    now = [0.0]
    starts: list[float] = []

    class Bridge(MqttBridgeProcess):
        def start(self) -> None:  # no process: record when one would start, dead at once
            starts.append(now[0])
            self.kept.process, self.kept.respawn.started = _Exited(), now[0]

    config = parse_config({"mqtt": {"host": "b"}})
    bridge = Bridge(config, "tcp://127.0.0.1:1", "ipc:///nowhere", clock=lambda: now[0])
    bridge.start()
    for _ in range(600):  # ten minutes of supervisor turns, 1 s apart
        now[0] += 1.0
        bridge.check()
    # Each gap: the turn that notices the exit (1 s here), then the backoff delay.
    delays = [b - a - 1 for a, b in itertools.pairwise(starts)]
    assert delays[:7] == [1, 2, 4, 8, 16, 32, 60] and set(delays[7:]) == {60}
    assert bridge.counters.get("restarts") == len(starts) - 1
    while bridge.kept.respawn.due is not None:  # up to the next start
        now[0] += 1.0
        bridge.check()
    now[0] += 61.0  # that one ran for over a minute before it died: the wait starts over
    before = len(starts)
    bridge.check()
    now[0] += 1.0
    bridge.check()
    assert len(starts) == before + 1 and starts[-1] - starts[-2] == 62
