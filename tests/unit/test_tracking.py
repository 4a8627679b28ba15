"""Tracks, zones and lines on constructed sequences with exact answers (the real ByteTrack)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edged.config import ConfigError, parse_config
from edged.postprocess.decoders import Detections
from edged.tracking.camera import CameraTracker, FrameInfo
from edged.tracking.config import TrackingConfig
from edged.tracking.ids import BLOCK, IdAllocator
from edged.tracking.result import NO_TRACK

W, H = 640, 480
LABELS = ("person", "bicycle", "car")


def dets(*objects: tuple[float, float, float, float, int, float]) -> Detections:
    """Detections from (x1, y1, x2, y2, class_id, score) tuples."""
    if not objects:
        return Detections.empty()
    a = np.array(objects, np.float64)
    return Detections(a[:, :4].astype(np.float32), a[:, 5].astype(np.float32),
                      a[:, 4].astype(np.int64))  # fmt: skip


def box_at(cx: float, cy: float, cls: int = 0, score: float = 0.9, w: float = 40, h: float = 80):
    """A box whose bottom-centre (the default anchor) is at (cx, cy)."""
    return (cx - w / 2, cy - h, cx + w / 2, cy, cls, score)


class Run:
    """Feeds frames at ``fps`` into one CameraTracker and collects everything it says."""

    def __init__(self, fps: float = 30.0, **cfg: object) -> None:
        self.cfg = TrackingConfig.model_validate({"enabled": True, **cfg})
        self.tracker = CameraTracker("cam0", self.cfg)
        self.fps = fps
        self.seq = 0
        self.events: list[dict] = []

    def frame(self, *objects, labels=LABELS, skip: int = 0) -> list[int]:
        self.seq += skip  # frames that never arrived (dropped by a live camera)
        info = FrameInfo(self.seq, 1e9 + self.seq / self.fps, 100 + self.seq / self.fps, W, H)
        result = self.tracker.update(dets(*objects), labels, info)
        self.events += [dict(e, seq=self.seq) for e in result.events]
        self.seq += 1
        return result.track_ids.tolist()

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


LINE = {"name": "gate", "points": [[0.5, 0.0], [0.5, 1.0]]}  # vertical, drawn top to bottom


def test_crossing_a_line_once_each_way_gives_two_events_with_their_directions() -> None:
    run = Run(lines=[LINE])
    for x in range(100, 541, 10):  # left to right across x=320 ...
        run.frame(box_at(x, 300))
    for _ in range(5):  # ... turns round ...
        run.frame(box_at(540, 300))
    for x in range(540, 99, -10):  # ... and back
        run.frame(box_at(x, 300))
    crossings = run.of("line_cross")
    # Walking from A (top) to B (bottom) of the line, the image's right side is on your left.
    assert [(c["line"], c["direction"]) for c in crossings] == [
        ("gate", "right_to_left"), ("gate", "left_to_right")]  # fmt: skip
    assert len({c["track_id"] for c in crossings}) == 1
    assert crossings[0]["label"] == "person"
    assert 310 <= crossings[0]["point"][0] <= 330


def test_a_horizontal_line_drawn_left_to_right_counts_going_down_as_left_to_right() -> None:
    run = Run(lines=[{"name": "door", "points": [[0.0, 0.5], [1.0, 0.5]]}])
    for y in range(150, 400, 10):
        run.frame(box_at(320, y))
    assert [c["direction"] for c in run.of("line_cross")] == ["left_to_right"]


def test_passing_beside_the_end_of_a_line_is_no_crossing() -> None:
    run = Run(lines=[{"name": "short", "points": [[0.5, 0.0], [0.5, 0.3]]}])  # y 0..144
    for x in range(100, 541, 10):
        run.frame(box_at(x, 300))  # anchor at y=300: below the segment's end
    assert run.of("line_cross") == []


def test_leaving_and_reentering_a_zone() -> None:
    zone = {"name": "lot", "polygon": [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]}
    run = Run(zones=[zone])
    path = [*range(100, 401, 10), *[400] * 5, *range(400, 99, -10), *[100] * 5,
            *range(100, 401, 10)]  # fmt: skip
    for x in path:  # out, in (x > 160), out, in again
        run.frame(box_at(x, 240))
    run.events += [dict(e, seq=run.seq) for e in run.tracker.finish().events]
    kinds = [(e["type"], e.get("zone")) for e in run.events if e["type"] != "track_start"]
    assert kinds == [("zone_enter", "lot"), ("zone_exit", "lot"), ("zone_enter", "lot"),
                     ("zone_exit", "lot"), ("track_end", None)]  # fmt: skip
    assert run.events[-1]["reason"] == "end_of_stream"


def test_zone_counts_and_label_filter() -> None:
    zone = {"name": "road", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "labels": ["car"]}
    run = Run(zones=[zone])
    for x in range(100, 200, 10):
        run.frame(box_at(x, 200, cls=0), box_at(x + 300, 400, cls=2, w=120, h=60))
    info = FrameInfo(run.seq, 0, 100 + run.seq / run.fps, W, H)
    result = run.tracker.update(dets(box_at(200, 200), box_at(500, 400, 2, w=120, h=60)),
                                LABELS, info)  # fmt: skip
    assert result.zones == {("road", "car"): 1}  # the person is not counted in a car zone
    assert result.active == {"person": 1, "car": 1}
    assert [e["label"] for e in run.of("zone_enter")] == ["car"]


def test_track_ids_need_min_hits_and_then_stay() -> None:
    run = Run(min_hits=3)
    ids = [run.frame(box_at(100 + 5 * i, 200))[0] for i in range(6)]
    assert ids[:2] == [NO_TRACK, NO_TRACK]
    assert ids[2] > 0 and set(ids[2:]) == {ids[2]}
    assert [e["seq"] for e in run.of("track_start")] == [2]


@pytest.mark.parametrize("fps", [30.0, 5.0])
def test_id_survives_a_frame_gap_within_the_track_buffer_at_any_frame_rate(fps: float) -> None:
    run = Run(fps=fps, track_buffer_s=1.0)
    for i in range(5):
        first = run.frame(box_at(100 + i, 200))[0]
    gap = int(0.9 * fps)  # 0.9 s without a frame: the camera dropped them
    after = run.frame(box_at(106, 200), skip=gap)[0]
    assert after == first
    assert run.of("track_end") == []


def test_a_gap_longer_than_the_buffer_ends_the_track_and_the_next_gets_a_new_id() -> None:
    run = Run(fps=30, track_buffer_s=0.5)
    for i in range(5):
        first = run.frame(box_at(100 + i, 200))[0]
    run.frame(skip=30)  # a frame 1 s later with nothing in it
    (end,) = run.of("track_end")
    assert end["track_id"] == first and end["reason"] == "lost" and end["label"] == "person"
    assert end["duration_s"] == pytest.approx(4 / 30, abs=1e-3)
    assert end["best_confidence"] == pytest.approx(0.9)
    for _ in range(3):
        again = run.frame(box_at(105, 200))[0]
    assert again > first


def test_best_confidence_and_its_label_win() -> None:
    run = Run(track_buffer_s=0.2)
    for score in (0.6, 0.95, 0.7):
        run.frame(box_at(100, 200, score=score))
    run.frame(skip=30)
    (end,) = run.of("track_end")
    assert end["best_confidence"] == pytest.approx(0.95)


def test_a_model_with_other_labels_ends_tracks_and_never_reuses_their_ids() -> None:
    run = Run()
    for i in range(4):
        before = run.frame(box_at(100 + i, 200))[0]
    for i in range(4):
        after = run.frame(box_at(104 + i, 200), labels=("cat", "dog"))[0]
    assert after > before
    (end,) = run.of("track_end")
    assert end["track_id"] == before and end["reason"] == "model_changed"


def test_a_swap_to_a_model_with_the_same_labels_keeps_the_tracks() -> None:
    run = Run()
    ids = [run.frame(box_at(100 + i, 200), labels=tuple(LABELS))[0] for i in range(8)]
    assert len(set(ids[1:])) == 1 and run.of("track_end") == []


def test_ids_continue_past_a_restarted_process(tmp_path: Path) -> None:
    path = tmp_path / "ids"
    first = IdAllocator(path)
    used = [first.next() for _ in range(5)]
    second = IdAllocator(path)  # the process restarted: nothing of `first` is left but the file
    assert second.next() > max(used)
    assert second.next() >= BLOCK


def test_detections_and_track_ids_stay_aligned() -> None:
    run = Run()
    for _ in range(3):
        ids = run.frame(box_at(100, 200), box_at(400, 300, cls=2), box_at(250, 450, score=0.3))
    assert ids[0] > 0 and ids[1] > 0 and ids[0] != ids[1]
    assert ids[2] == NO_TRACK  # a low-score detection never starts a track


@pytest.mark.parametrize(
    ("tracking", "field", "reason"),
    [
        ({"zones": [{"name": "z", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}]},
         "tracking.zones.0.polygon", "self-intersecting"),
        ({"zones": [{"name": "z", "polygon": [[0, 0], [1.5, 0], [1, 1]]}]},
         "tracking.zones.0.polygon", "outside the frame"),
        ({"lines": [{"name": "l", "points": [[0, 0], [1, 1]], "labels": []}]},
         "tracking.lines.0.labels", "empty label filter"),
        ({"lines": [{"name": "l", "points": [[0, -0.1], [1, 1]]}]},
         "tracking.lines.0.points", "outside the frame"),
        ({"lines": [{"name": "l", "points": [[0, 0], [1, 1]]}] * 2},
         "tracking", "used twice"),
    ],
)  # fmt: skip
def test_bad_zones_and_lines_are_config_errors_naming_the_field(tracking, field, reason) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"tracking": tracking})
    assert any(path == field and reason in why for path, why in err.value.errors), err.value


def test_pixel_points_are_checked_against_the_configured_frame_size() -> None:
    line = {"name": "l", "units": "pixels", "points": [[0, 0], [700, 100]]}
    with pytest.raises(ConfigError) as err:
        parse_config({"source": {"width": 640, "height": 480}, "tracking": {"lines": [line]}})
    assert err.value.errors == [
        ("tracking.lines.0.points", "point 1 (700, 100) is outside the 640x480 frame")]  # fmt: skip
    parse_config({"tracking": {"lines": [line]}})  # size unknown until the first frame


def test_every_event_validates_against_the_events_schema_and_formats_on_one_line() -> None:
    import jsonschema

    from edged.tracking.events import EVENTS_JSON_SCHEMA, event_messages, format_event

    zone = {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    run = Run(lines=[LINE], zones=[zone])
    for x in range(100, 541, 10):
        run.frame(box_at(x, 300))
    run.events += run.tracker.finish().events
    assert {e["type"] for e in run.events} == {
        "track_start", "track_end", "zone_enter", "zone_exit", "line_cross"}  # fmt: skip
    raw = tuple({k: v for k, v in e.items() if k != "seq"} for e in run.events)  # as published
    for message in event_messages(raw, "cam0", 5, 1e9):
        jsonschema.validate(message, EVENTS_JSON_SCHEMA)
        line = format_event(message, now=1e9)
        assert line.startswith(f"#5 cam0 {message['type']} person id ") and "\n" not in line
    bad = event_messages(({"type": "line_cross", "track_id": 1, "label": "x"},), "cam0", 0, 0)
    with pytest.raises(jsonschema.ValidationError):  # a line_cross needs its line and direction
        jsonschema.validate(bad[0], EVENTS_JSON_SCHEMA)


def test_metrics_follow_the_tracks_and_zones_drop_to_zero() -> None:
    from edged.metrics import Metrics
    from edged.tracking.result import TrackingSummary

    m = Metrics()
    crossing = ("gate", "person", "left_to_right")
    m.record_tracking(TrackingSummary((("person", 2),), (("lot", "person", 1),), (crossing,),
                                      0.0002))  # fmt: skip
    m.record_tracking(TrackingSummary((("car", 1),)))
    value = m.registry.get_sample_value
    assert value("edged_tracks_active", {"label": "person"}) == 0
    assert value("edged_tracks_active", {"label": "car"}) == 1
    assert value("edged_zone_objects", {"zone": "lot", "label": "person"}) == 0
    labels = dict(zip(("line", "label", "direction"), crossing, strict=True))
    assert value("edged_line_crossings_total", labels) == 1
    assert value("edged_tracker_seconds_count") == 1


def test_ids_go_on_when_their_file_cannot_be_written(tmp_path: Path) -> None:
    ids = IdAllocator(tmp_path / "missing-dir" / "ids")
    assert [ids.next() for _ in range(3)] == [1, 2, 3]


def test_zones_and_lines_tested_together_agree_with_one_at_a_time() -> None:
    from edged.tracking.geometry import Polygons, points_in_polygon, side_of_line, sides_of_lines

    rng = np.random.default_rng(3)
    points = rng.uniform(0, 100, (200, 2))
    square = np.array([[10, 10], [60, 10], [60, 60], [10, 60]], float)
    concave = np.array([[50, 0], [100, 0], [100, 100], [75, 40], [50, 100]], float)  # a "V"
    both = Polygons([square, concave]).contains(points)
    assert both.shape == (200, 2)
    assert (both[:, 0] == points_in_polygon(points, square)).all()
    assert (both[:, 1] == points_in_polygon(points, concave)).all()
    assert both[:, 1].any() and not both[:, 1].all()
    assert Polygons([square]).contains(np.array([[30.0, 30.0], [70.0, 30.0]])).tolist() == [
        [True], [False]]  # fmt: skip
    lines = [((0.0, 0.0), (100.0, 100.0)), ((50.0, 0.0), (50.0, 100.0))]
    sides = sides_of_lines(points, lines)
    for k, (a, b) in enumerate(lines):
        assert (sides[:, k] == side_of_line(points, a, b)).all()
