"""The published message as subscribers read it: JSON that validates, numbers as written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edged.pipeline.messages import Frame, ModelDescriptor
from edged.pipeline.stages.publish import build_message
from edged.postprocess.decoders import Detections
from edged.publish.schema import JSON_SCHEMA

MODEL = ModelDescriptor("m/fp32/1", "m", "fp32", "onnxruntime", "fp32", 640, 640, "NHWC",
                        "uint8", "raw_head", ("person", "car"))  # fmt: skip


def test_boxes_carry_the_rounded_pixels_not_float32_noise() -> None:
    boxes = np.array([[575.9, 12.3, 600.04, 100.0]], np.float32)  # 575.9 is 575.90002 in f32
    detections = Detections(boxes, np.array([0.87654], np.float32), np.array([1]))
    frame = Frame(7, 1700000000.0, 10.0, 1280, 720, 0, timings=(("infer", 10.1, 10.14),),
                  model=MODEL, detections=detections)  # fmt: skip
    message = build_message(frame, "cam0", now=10.2)
    assert '"box": [575.9, 12.3, 600.0, 100.0]' in json.dumps(message)
    assert message["detections"][0]["label"] == "car"
    assert message["detections"][0]["confidence"] == 0.8765
    import jsonschema

    jsonschema.validate(message, JSON_SCHEMA)
    # The schema admits fields added later; what edged publishes is exactly what it describes.
    assert set(message) == set(JSON_SCHEMA["properties"])
    detection_fields = JSON_SCHEMA["properties"]["detections"]["items"]["properties"]
    assert set(message["detections"][0]) == set(detection_fields) - {"track_id"}  # tracking off


def test_tracking_adds_a_track_id_to_each_detection_null_until_confirmed() -> None:
    import jsonschema

    from edged.tracking.result import NO_TRACK, TrackingResult

    detections = Detections(np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32),
                            np.array([0.9, 0.3], np.float32), np.array([0, 1]))  # fmt: skip
    tracking = TrackingResult(np.array([12, NO_TRACK], np.int64))
    frame = Frame(3, 1700000000.0, 10.0, 64, 48, 0, model=MODEL, detections=detections,
                  tracking=tracking)  # fmt: skip
    message = build_message(frame, "cam0", now=10.1)
    assert [d["track_id"] for d in message["detections"]] == [12, None]
    jsonschema.validate(message, JSON_SCHEMA)
    assert json.loads(json.dumps(message))["detections"][1]["track_id"] is None


def test_consumers_validating_against_the_schema_accept_added_fields() -> None:
    """Fields are only added within a schema version: a v1 consumer must keep working."""
    import jsonschema

    detections = Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32),
                            np.array([0]))  # fmt: skip
    frame = Frame(1, 1700000000.0, 10.0, 64, 48, 0, model=MODEL, detections=detections)
    message = build_message(frame, "cam0", now=10.1)
    message["track_id_source"] = "future"
    message["detections"][0]["track_id"] = 7
    jsonschema.validate(message, JSON_SCHEMA)
    message["schema_version"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(message, JSON_SCHEMA)
