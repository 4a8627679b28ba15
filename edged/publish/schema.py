"""The published detection message (schema version 1): encoded and described here, built from
a frame by the publish stage (:func:`edged.pipeline.stages.publish.build_message`).

Topic ``detections.<camera_id>``; payload JSON (default) or msgpack with these fields::

    {
      "schema_version": 1,
      "camera_id": "cam0",
      "seq": 42,                         # contiguous per run (0 after a restart); gaps = missed
      "timestamp": 1764000000.123,       # wall clock when the source read ended, epoch seconds
      "source": {"width": 768, "height": 432},
      "model": {"name": "yolov5n", "variant": "fp32", "backend": "onnxruntime",
                "precision": "fp32"},
      "latency_ms": {"capture": 1.2, "preprocess": 0.9, "infer": 61.0, "postprocess": 0.4,
                     "end_to_end": 66.1},   # end_to_end: capture → start of publish
      "detections": [{"label": "person", "class_id": 0, "confidence": 0.87,
                      "box": [x1, y1, x2, y2],   # source pixels
                      "track_id": 17}]           # with tracking.enabled; null: no track yet
    }

Compatibility: within one ``schema_version`` fields are only ever added, so a consumer must
ignore fields it does not know (the schema allows them); removing or changing the meaning of a
field bumps the version. ``edged schema`` prints the JSON Schema.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

SCHEMA_VERSION = 1

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edged detections message",
    "type": "object",
    "required": [
        "schema_version", "camera_id", "seq", "timestamp", "source", "model", "latency_ms",
        "detections",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "camera_id": {"type": "string"},
        "seq": {"type": "integer", "minimum": 0},
        "timestamp": {"type": "number"},
        "source": {
            "type": "object",
            "required": ["width", "height"],
            "properties": {
                "width": {"type": "integer", "minimum": 1},
                "height": {"type": "integer", "minimum": 1},
            },
        },
        "model": {
            "type": "object",
            "required": ["name", "variant", "backend", "precision"],
            "properties": {k: {"type": "string"} for k in
                           ("name", "variant", "backend", "precision")},
        },
        "latency_ms": {"type": "object", "additionalProperties": {"type": "number"}},
        "detections": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "class_id", "confidence", "box"],
                "properties": {
                    "label": {"type": "string"},
                    "class_id": {"type": "integer", "minimum": 0},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "box": {"type": "array", "items": {"type": "number"}, "minItems": 4,
                            "maxItems": 4},
                    # Added in version 1 with tracking (tracking.enabled); absent without it.
                    "track_id": {"type": ["integer", "null"], "minimum": 1},
                },
            },
        },
    },
}  # fmt: skip


def topic_for(camera_id: str) -> bytes:
    return f"detections.{camera_id}".encode()


def encode(message: dict[str, Any], fmt: str) -> bytes:
    if fmt == "msgpack":
        return msgpack.packb(message, use_bin_type=True)
    return json.dumps(message, separators=(",", ":")).encode()


def decode_payload(payload: bytes) -> dict[str, Any]:
    """JSON or msgpack, told apart by the first byte (JSON objects start with ``{``)."""
    if payload[:1] == b"{":
        return json.loads(payload)
    return msgpack.unpackb(payload, raw=False)
