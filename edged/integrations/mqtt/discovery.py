"""Topics and Home Assistant MQTT discovery messages for one camera.

Discovery (retained) on ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``, one
message per entity, all tied to one device per camera and to its availability topic:

- ``sensor`` per configured label: how many are in the picture now;
- ``binary_sensor`` per configured label: detected now (on while the count is above zero);
- ``sensor`` FPS, end-to-end latency, inference time, and the active model (diagnostic);
- ``select`` of the manifest's variants: choosing one hot-swaps the model.

Every entity reads the one JSON state topic with a ``value_template``, so a state change is
one message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edged import __version__
from edged.integrations.config import MqttConfig
from edged.integrations.mqtt.state import DIRECTIONS

ONLINE, OFFLINE = "online", "offline"


@dataclass(frozen=True)
class TrackingNames:
    """The zones and lines of ``tracking:`` (their names; tracking is on)."""

    zones: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()


def slug(text: str) -> str:
    """An id Home Assistant accepts in discovery topics and unique ids ([a-z0-9_])."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "x"


@dataclass(frozen=True)
class Topics:
    base: str  # <base_topic>/<camera_id>

    @classmethod
    def of(cls, cfg: MqttConfig, camera_id: str) -> Topics:
        return cls(f"{cfg.base_topic}/{camera_id}")

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def variant_set(self) -> str:
        return f"{self.base}/variant/set"


def _count_template(label: str) -> str:
    return "{{ value_json.counts[" + json.dumps(label) + "] | default(0) }}"


def _detected_template(label: str) -> str:
    count = "(value_json.counts[" + json.dumps(label) + "] | default(0))"
    return "{{ 'ON' if " + count + " > 0 else 'OFF' }}"


def discovery_messages(
    cfg: MqttConfig,
    camera_id: str,
    variants: list[str],
    tracking: TrackingNames | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of every entity of ``camera_id``; the select only with variants, the
    track, zone and line sensors only with tracking."""
    topics = Topics.of(cfg, camera_id)
    node = slug(f"edged_{camera_id}")
    device = {
        "identifiers": [node],
        "name": f"edged {camera_id}",
        "manufacturer": "edged",
        "model": "camera inference daemon",
        "sw_version": __version__,
    }
    common = {
        "device": device,
        "origin": {"name": "edged", "sw_version": __version__},
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": cfg.qos,
    }

    def entity(component: str, object_id: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        unique = f"{node}_{slug(object_id)}"
        topic = f"{cfg.discovery_prefix}/{component}/{node}/{slug(object_id)}/config"
        return topic, {**common, "unique_id": unique, **fields}

    state = {"state_topic": topics.state}
    messages = []
    for label in cfg.labels:
        messages.append(entity("sensor", f"{label}_count", name=f"{label} count", **state,
                               value_template=_count_template(label), state_class="measurement",
                               icon="mdi:counter"))  # fmt: skip
        messages.append(entity("binary_sensor", f"{label}_detected", name=f"{label} detected",
                               **state, value_template=_detected_template(label),
                               payload_on="ON", payload_off="OFF",
                               device_class="occupancy"))  # fmt: skip
    messages += [
        entity("sensor", "fps", name="FPS", **state, value_template="{{ value_json.fps }}",
               unit_of_measurement="fps", state_class="measurement",
               suggested_display_precision=1, icon="mdi:speedometer"),
        entity("sensor", "latency", name="Latency", **state,
               value_template="{{ value_json.latency_ms }}", unit_of_measurement="ms",
               device_class="duration", state_class="measurement",
               suggested_display_precision=0),
        entity("sensor", "inference_time", name="Inference time", **state,
               value_template="{{ value_json.infer_ms }}", unit_of_measurement="ms",
               device_class="duration", state_class="measurement",
               suggested_display_precision=0, entity_category="diagnostic"),
        entity("sensor", "model", name="Model", **state,
               value_template="{{ value_json.model }}/{{ value_json.variant }}",
               entity_category="diagnostic", icon="mdi:brain"),
    ]  # fmt: skip
    if tracking is not None:
        messages += _tracking_entities(entity, state, tracking)
    if variants:
        messages.append(entity("select", "variant", name="Model variant", **state,
                               value_template="{{ value_json.variant }}",
                               command_topic=topics.variant_set, options=list(variants),
                               entity_category="config", icon="mdi:swap-horizontal"))  # fmt: skip
    return messages


def _tracking_entities(
    entity: Callable[..., tuple[str, dict[str, Any]]],
    state: dict[str, str],
    tracking: TrackingNames,
) -> list[tuple[str, dict[str, Any]]]:
    messages = [entity("sensor", "tracks", name="Tracked objects", **state,
                       value_template="{{ value_json.tracks | default(0) }}",
                       state_class="measurement", icon="mdi:target-account")]  # fmt: skip
    for zone in tracking.zones:
        messages.append(entity("sensor", f"zone_{zone}", name=f"{zone} occupancy", **state,
                               value_template="{{ value_json.zones[" + json.dumps(zone) + "] }}",
                               state_class="measurement", icon="mdi:vector-square"))  # fmt: skip
    for line in tracking.lines:
        for direction in DIRECTIONS:
            template = f"{{{{ value_json.lines[{json.dumps(line)}][{json.dumps(direction)}] }}}}"
            messages.append(entity(
                "sensor", f"line_{line}_{direction}", name=f"{line} {direction.replace('_', ' ')}",
                **state, value_template=template, state_class="total_increasing",
                icon="mdi:transit-connection-horizontal"))  # fmt: skip
    return messages
