"""The preview frame message: topic ``frames.<camera_id>``, multipart ``[topic, header, jpeg]``.

The header is JSON (always, whatever ``publish.format`` says: viewers are often browsers or
scripts)::

    {
      "schema_version": 1,
      "camera_id": "cam0",
      "seq": 42,                        # the frame's seq: matches its detections message
      "timestamp": 1764000000.123,      # capture wall-clock time
      "width": 640, "height": 360,      # the JPEG's size
      "source": {"width": 768, "height": 432},
      "model": {"name": "yolov5n", "variant": "fp32", "backend": "onnxruntime",
                "precision": "fp32"},
      "fps": 12.3,                      # detection frames published per second (last 5 s)
      "latency_ms": {"capture": 1.2, ..., "end_to_end": 66.1},
      "detections": [...]               # as in the detections message (source pixels)
    }

The third part is the JPEG (boxes, labels and a status line already drawn).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FRAMES_PREFIX = b"frames."
SCHEMA_VERSION = 1


def frames_topic(camera_id: str) -> bytes:
    return FRAMES_PREFIX + camera_id.encode()


def private_endpoint(runtime_dir: Path | str) -> str:
    """The ipc socket the publish stage feeds and the supervisor's HTTP server reads.

    It lives in the private runtime directory (mode 0700), so it is not reachable from the
    network whatever ``publish.endpoint`` is.
    """
    return f"ipc://{Path(runtime_dir) / 'preview.sock'}"


def build_header(message: dict[str, Any], width: int, height: int, fps: float) -> dict[str, Any]:
    """The header for a JPEG made from the frame ``message`` (a detections message) describes."""
    return {
        "schema_version": SCHEMA_VERSION,
        "camera_id": message["camera_id"],
        "seq": message["seq"],
        "timestamp": message["timestamp"],
        "width": width,
        "height": height,
        "source": message["source"],
        "model": message["model"],
        "fps": round(fps, 2),
        "latency_ms": message["latency_ms"],
        "detections": message["detections"],
    }


def encode_header(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode()


def decode_frame(parts: list[bytes]) -> tuple[dict[str, Any], bytes]:
    """(header, jpeg) from a received ``[topic, header, jpeg]`` multipart message."""
    if len(parts) != 3:
        raise ValueError(f"expected 3 message parts (topic, header, jpeg), got {len(parts)}")
    return json.loads(parts[1]), parts[2]
