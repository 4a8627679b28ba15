"""Preview drawing and encoding: boxes land where the detections say, at preview scale."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edged.preview.annotate import (
    HUD_BG,
    annotate,
    color_for,
    hud_height,
    hud_text,
    preview_size,
)
from edged.preview.encoder import Job, RateMeter, encode_jpeg

SOURCE = (768, 432)


def message(detections: list[dict], seq: int = 7) -> dict:
    return {
        "schema_version": 1,
        "camera_id": "cam0",
        "seq": seq,
        "timestamp": 1764000000.0,
        "source": {"width": SOURCE[0], "height": SOURCE[1]},
        "model": {"name": "yolov5n", "variant": "static", "backend": "onnxruntime",
                  "precision": "int8-static"},
        "latency_ms": {"infer": 40.0, "end_to_end": 65.4},
        "detections": detections,
    }  # fmt: skip


PERSON = {"label": "person", "class_id": 0, "confidence": 0.87, "box": [120.0, 60.0, 300.0, 380.0]}
CAR = {"label": "car", "class_id": 2, "confidence": 0.55, "box": [400.0, 100.0, 700.0, 300.0]}


def near(image: np.ndarray, x: int, y: int, color: tuple[int, int, int], radius: int = 2,
         tolerance: int = 60) -> bool:  # fmt: skip
    """Some pixel within ``radius`` of (x, y) is within ``tolerance`` of ``color`` (per channel)."""
    h, w = image.shape[:2]
    patch = image[
        max(0, y - radius) : min(h, y + radius + 1), max(0, x - radius) : min(w, x + radius + 1)
    ]
    diff = np.abs(patch.astype(int) - np.array(color)).max(axis=2)
    return bool((diff <= tolerance).any())


@pytest.mark.parametrize(
    ("size", "max_width", "expected"),
    [((768, 432), 640, (640, 360)), ((640, 480), 640, (640, 480)), ((320, 240), 640, (320, 240)),
     ((1920, 1080), 640, (640, 360)), ((1000, 333), 500, (500, 166))],
)  # fmt: skip
def test_preview_size_keeps_the_aspect_and_never_upscales(size, max_width, expected):
    assert preview_size(*size, max_width) == expected


def test_palette_colours_are_distinct_for_the_common_classes():
    assert len({color_for(c) for c in range(12)}) == 12
    assert color_for(0) == color_for(12)


def test_boxes_are_drawn_at_scaled_corners_in_the_class_colour():
    image = np.full((360, 640, 3), 90, np.uint8)
    out = annotate(image, [PERSON, CAR], SOURCE)
    assert out is image  # in place: the caller owns a private copy
    s = 640 / 768
    for det in (PERSON, CAR):
        x1, y1, x2, y2 = (round(v * s) for v in det["box"])
        color = color_for(det["class_id"])
        for x, y in ((x1, y1), (x2, y1), (x1, y2), (x2, y2)):
            assert near(out, x, y, color, tolerance=10), (det["label"], x, y)
    # Inside the boxes, away from the labels, the picture is untouched.
    assert (out[200, 180] == 90).all()
    assert (out[200, 450] == 90).all()


def test_label_tab_sits_above_the_box_or_inside_at_the_top_edge():
    image = np.full((360, 640, 3), 90, np.uint8)
    top = {**CAR, "box": [400.0, 0.0, 700.0, 300.0]}
    annotate(image, [PERSON, top], SOURCE)
    s = 640 / 768
    # PERSON's tab: filled with its colour just above its top-left corner.
    assert near(image, round(120 * s) + 3, round(60 * s) - 5, color_for(0), radius=1, tolerance=10)
    # The top-edge box's tab is inside the box.
    assert near(image, round(400 * s) + 3, 5, color_for(2), radius=1, tolerance=10)


def test_label_tab_at_the_right_edge_is_shifted_inside():
    image = np.full((360, 640, 3), 90, np.uint8)
    edge = {**PERSON, "box": [740.0, 100.0, 768.0, 300.0]}
    annotate(image, [edge], SOURCE)
    tab = image[: round(100 * 640 / 768), 560:]
    assert (np.abs(tab.astype(int) - color_for(0)).max(axis=2) == 0).sum() > 200
    assert (image[:, -1] != 90).any()  # reaches the right edge


def test_status_band_along_the_bottom():
    image = np.full((360, 640, 3), 200, np.uint8)
    text = hud_text(message([PERSON]), 12.34)
    assert text.startswith("yolov5n/static  12.3 fps  e2e 65 ms  #7")
    annotate(image, [], SOURCE, text)
    band = hud_height(640)
    assert 10 < band < 40
    bottom = image[360 - band :]
    assert (bottom == HUD_BG).all(axis=2).mean() > 0.7  # mostly background...
    assert (bottom == 255).all(axis=2).any()  # ...with white text on it
    assert (image[: 360 - band] == 200).all()  # nothing drawn above it


def test_empty_and_odd_messages_do_not_break_the_status_line():
    assert hud_text({}, 0.0) == "?/?  0.0 fps  #?"


def test_encode_jpeg_decodes_to_the_preview_size_with_a_matching_header():
    import json

    image = np.full((360, 640, 3), 90, np.uint8)
    header, jpeg = encode_jpeg(Job(image, message([PERSON, CAR], seq=42), 9.5), quality=90)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (360, 640, 3)
    meta = json.loads(header)
    assert meta["seq"] == 42
    assert (meta["width"], meta["height"]) == (640, 360)
    assert meta["source"] == {"width": 768, "height": 432}
    assert meta["fps"] == 9.5
    assert meta["model"]["variant"] == "static"
    assert meta["detections"] == [PERSON, CAR]
    s = 640 / 768
    x1, y1 = round(PERSON["box"][0] * s), round(PERSON["box"][3] * s)
    assert near(decoded, x1, y1, color_for(0))


def test_rate_meter_counts_events_in_its_window():
    meter = RateMeter(window_s=5.0)
    assert meter.rate(0.0) == 0.0
    for i in range(11):
        meter.tick(100.0 + i * 0.1)  # 10 per second
    assert meter.rate(101.0) == pytest.approx(10.0)
    assert meter.rate(200.0) == 0.0  # all of them too old


def test_tracking_zones_lines_and_track_ids_are_drawn() -> None:
    from edged.preview.annotate import OVERLAY, tracking_overlays
    from edged.tracking.config import TrackingConfig

    cfg = TrackingConfig.model_validate({
        "enabled": True,
        "zones": [{"name": "lot", "polygon": [[0.5, 0.5], [0.9, 0.5], [0.9, 0.9], [0.5, 0.9]]}],
        "lines": [{"name": "door", "units": "pixels", "points": [[0, 216], [384, 216]]}],
    })  # fmt: skip
    overlays = tracking_overlays(cfg)
    assert [o.name for o in overlays] == ["lot", "door"]
    image = np.zeros((216, 384, 3), np.uint8)  # half the source size
    annotate(image, [], SOURCE, overlays=overlays)
    white = np.all(image > 200, axis=2)  # OVERLAY, anti-aliased
    assert OVERLAY == (255, 255, 255)
    assert white[107:110, 20:170].any(axis=0).all()  # the line at source y=216: preview y=108
    assert white[130:194, 191:194].any(axis=1).all()  # the zone's left edge at x = 0.5 of w
    assert not white[10:90, 20:170].any()  # nothing drawn elsewhere

    with_id = annotate(np.zeros((432, 768, 3), np.uint8), [{**PERSON, "track_id": 17}], SOURCE)
    without = annotate(np.zeros((432, 768, 3), np.uint8), [PERSON], SOURCE)
    # The tab grows by the width of "#17 ": same box, a longer label.
    tab = color_for(0)
    assert np.all(with_id == tab, axis=2).sum() > np.all(without == tab, axis=2).sum()
    assert tracking_overlays(TrackingConfig()) == ()  # tracking off: nothing to draw
