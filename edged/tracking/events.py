"""The ``events.<camera_id>`` topic: one message per track event, schema version 1.

Payload JSON (or msgpack, as ``publish.format``), for example::

    {"schema_version": 1, "type": "line_cross", "camera_id": "cam0", "seq": 812,
     "timestamp": 1764000000.1, "track_id": 17, "label": "person", "line": "door",
     "direction": "left_to_right", "point": [412.0, 300.5]}

Types and their own fields: ``track_start`` (confidence, box), ``track_end`` (best_confidence,
duration_s, first_seq, last_seq, reason: lost | end_of_stream | model_changed), ``zone_enter``
and ``zone_exit`` (zone, point; null when the track ended inside), ``line_cross`` (line,
direction, point). ``seq`` and ``timestamp`` are those of the frame the event was seen in, so
events of one frame follow its detections message and seq never goes back within a run.
Within a schema version fields are only ever added.
"""

from __future__ import annotations

import time
from typing import Any

EVENTS_SCHEMA_VERSION = 1
EVENT_TYPES = ("track_start", "track_end", "zone_enter", "zone_exit", "line_cross")

_point = {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
_by_type: dict[str, dict[str, Any]] = {
    "track_start": {
        "required": ["confidence", "box"],
        "properties": {
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
        },
    },
    "track_end": {
        "required": ["best_confidence", "duration_s", "first_seq", "last_seq", "reason"],
        "properties": {
            "best_confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "duration_s": {"type": "number", "minimum": 0},
            "first_seq": {"type": "integer", "minimum": 0},
            "last_seq": {"type": "integer", "minimum": 0},
            "reason": {"enum": ["lost", "end_of_stream", "model_changed"]},
        },
    },
    "zone_enter": {"required": ["zone", "point"],
                   "properties": {"zone": {"type": "string"}, "point": _point}},
    "zone_exit": {"required": ["zone", "point"],
                  "properties": {"zone": {"type": "string"}, "point": _point}},
    "line_cross": {
        "required": ["line", "direction", "point"],
        "properties": {"line": {"type": "string"},
                       "direction": {"enum": ["left_to_right", "right_to_left"]},
                       "point": _point},
    },
}  # fmt: skip

EVENTS_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edged track event message (topic events.<camera_id>)",
    "type": "object",
    "required": ["schema_version", "type", "camera_id", "seq", "timestamp", "track_id", "label"],
    "properties": {
        "schema_version": {"const": EVENTS_SCHEMA_VERSION},
        "type": {"enum": list(EVENT_TYPES)},
        "camera_id": {"type": "string"},
        "seq": {"type": "integer", "minimum": 0},
        "timestamp": {"type": "number"},
        "track_id": {"type": "integer", "minimum": 1},
        "label": {"type": "string"},
    },
    "allOf": [
        {"if": {"properties": {"type": {"const": kind}}}, "then": spec}
        for kind, spec in _by_type.items()
    ],
}


def events_topic_for(camera_id: str) -> bytes:
    return f"events.{camera_id}".encode()


def event_messages(
    events: tuple[dict[str, Any], ...], camera_id: str, seq: int, wall_time: float
) -> list[dict[str, Any]]:
    """The payloads for one frame's events, in order."""
    head = {"schema_version": EVENTS_SCHEMA_VERSION, "camera_id": camera_id, "seq": seq,
            "timestamp": wall_time}  # fmt: skip
    return [{**head, **event} for event in events]


def format_event(message: dict[str, Any], now: float | None = None) -> str:
    """One line per event for ``edged subscribe --events``."""
    kind = message.get("type", "?")
    detail = {
        "track_start": lambda m: f"conf {m['confidence']:.2f}",
        "track_end": lambda m: (
            f"{m['duration_s']:.1f}s best {m['best_confidence']:.2f} ({m['reason']})"
        ),
        "zone_enter": lambda m: f"zone {m['zone']}",
        "zone_exit": lambda m: f"zone {m['zone']}",
        "line_cross": lambda m: f"line {m['line']} {m['direction']}",
    }.get(kind, lambda m: "")
    age_ms = ((time.time() if now is None else now) - message.get("timestamp", 0)) * 1000.0
    return (
        f"#{message.get('seq')} {message.get('camera_id')} {kind} "
        f"{message.get('label')} id {message.get('track_id')} {detail(message)} "
        f"age {age_ms:.0f}ms"
    )
