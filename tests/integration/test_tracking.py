"""Tracking through the real daemon and real subscribers: track IDs on detections, events in
order behind their frame, IDs never reused across a hot swap, metrics, `edged subscribe --events`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest
import zmq

from edged.publish.schema import JSON_SCHEMA
from edged.tracking.events import EVENTS_JSON_SCHEMA
from tests.daemon import REPO_ROOT, VIDEO, VIDEO_FRAMES, Daemon, poll_until, require

pytestmark = pytest.mark.integration

# The street video: people and bicycles ride right across x = 0.85, the car goes left.
TRACKING = {
    "enabled": True,
    "lines": [{"name": "east", "points": [[0.85, 0.0], [0.85, 1.0]]}],
    "zones": [{"name": "lot", "polygon": [[0.2, 0.0], [1.0, 0.0], [1.0, 0.6], [0.2, 0.6]]}],
}


class Collector(threading.Thread):
    """Every (topic, message) on detections.* and events.*, in arrival order."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon=True)
        self.sub = daemon.subscriber(b"detections.")
        self.sub.setsockopt(zmq.SUBSCRIBE, b"events.")
        self.got: list[tuple[str, dict]] = []
        self.frames = 0
        self.done = threading.Event()  # set once the daemon has exited: read what is left

    def run(self) -> None:
        while True:
            got = Daemon.receive(self.sub, timeout=0.5)
            if got is None:
                if self.done.is_set():
                    return
                continue
            topic, message = got
            self.got.append((topic.decode(), message))
            if topic.startswith(b"detections."):
                self.frames += 1


def test_tracks_events_and_a_swap_through_the_daemon(tmp_path: Path, variant_dir: Path) -> None:
    args = ("--source", str(require(VIDEO)), "--mode", "lossless", "--wait-subscribers", "1",
            "--manifest", str(variant_dir / "yolov5n.yaml"), "--models-dir", str(variant_dir),
            "--variant", "fp32")  # fmt: skip
    with Daemon(tmp_path, *args, config={"tracking": TRACKING}) as daemon:
        collector = Collector(daemon)
        collector.start()
        # Early enough that the load of the new variant (CPU-bound, beside inference) ends
        # long before the 459-frame file does on a busy machine; late enough for live tracks.
        poll_until(lambda: collector.frames >= 60, 120, daemon.log_tail)
        reply = daemon.ctl("swap", "static", timeout=120)  # same labels: the tracks go on
        assert reply["ok"], reply
        poll_until(lambda: collector.frames >= VIDEO_FRAMES, 180, daemon.log_tail)
        scrape = daemon.wait_metric("edged_tracker_seconds_count", lambda v: v >= VIDEO_FRAMES)
        assert daemon.stop() == 0  # the drain ends the remaining tracks
        collector.done.set()
        collector.join(30)
    got = collector.got
    frames = [m for topic, m in got if topic == "detections.cam0"]
    events = [m for topic, m in got if topic == "events.cam0"]
    assert [m["seq"] for m in frames] == list(range(VIDEO_FRAMES))
    assert {m["model"]["variant"] for m in frames} == {"fp32", "static"}
    for m in frames:
        jsonschema.validate(m, JSON_SCHEMA)
        assert all("track_id" in d for d in m["detections"])
    for e in events:
        jsonschema.validate(e, EVENTS_JSON_SCHEMA)

    # Events follow their frame's detections message, in seq order.
    last_frame_seq = -1
    for topic, m in got:
        if topic == "detections.cam0":
            last_frame_seq = m["seq"]
        elif m.get("reason") != "end_of_stream":
            assert m["seq"] == last_frame_seq, m
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)

    # Each ID: started once, ended once, never seen again after its end (no reuse), and every
    # ID on a detection was announced first.
    starts = [e["track_id"] for e in events if e["type"] == "track_start"]
    ends = [e["track_id"] for e in events if e["type"] == "track_end"]
    assert starts and len(set(starts)) == len(starts) and sorted(ends) == sorted(starts)
    first_frame: dict[int, int] = {}  # track ID -> the first frame whose detections carry it
    ended: set[int] = set()
    for topic, m in got:
        if topic == "detections.cam0":
            for track_id in filter(None, (d["track_id"] for d in m["detections"])):
                assert track_id not in ended, f"track {track_id} reused after its end"
                first_frame.setdefault(track_id, m["seq"])
        elif m["type"] == "track_end":
            ended.add(m["track_id"])
    # A frame's detections message goes first, its events (track_start of a new ID) right after.
    assert {e["track_id"]: e["seq"] for e in events if e["type"] == "track_start"} == first_frame
    # Zone events pair up per track; crossings agree with the counter.
    for track_id in set(starts):
        zone = [e["type"] for e in events if e["track_id"] == track_id and "zone" in e]
        assert zone == ["zone_enter", "zone_exit"] * (len(zone) // 2)
    crossings = [e for e in events if e["type"] == "line_cross"]
    assert crossings, "nobody crossed the line"
    assert scrape.total("edged_line_crossings_total") == len(crossings)
    assert scrape.value("edged_tracker_seconds_count") == VIDEO_FRAMES


def test_subscribe_events_prints_the_events(tmp_path: Path) -> None:
    # Isolated layout: track IDs and events cross a process boundary (a datagram) here.
    args = ("--source", str(require(VIDEO)), "--mode", "realtime", "--loop", "--layout",
            "isolated")  # fmt: skip
    with Daemon(tmp_path, *args, config={"tracking": TRACKING}) as daemon:
        daemon.wait_ready()
        out = subprocess.run(
            [sys.executable, "-m", "edged.cli", "subscribe", daemon.publish_endpoint, "--events",
             "--count", "3", "--timeout", "120"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert daemon.stop() == 0
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    kinds = ("track_start", "track_end", "zone_enter", "zone_exit", "line_cross")
    for line in lines:
        assert line.startswith("#") and " cam0 " in line and any(f" {k} " in line for k in kinds)


def test_a_pixel_point_outside_the_real_frame_turns_tracking_off_naming_the_field(
    tmp_path: Path,
) -> None:
    # The frame size is only known once the video is open: checked on the first frame. The
    # detections go on without tracking (a restart could not fix the config).
    line = {"name": "gate", "units": "pixels", "points": [[10, 10], [1000, 10]]}
    tracking = {"enabled": True, "lines": [line]}
    args = ("--source", str(require(VIDEO)), "--mode", "lossless")
    why = "tracking.lines.0.points: point 1 (1000, 10) is outside the 768x432 frame"
    with Daemon(tmp_path, *args, config={"tracking": tracking}) as daemon:
        assert f"tracking off ({why})" in daemon.wait_ready(120)
        assert daemon.stop() == 0
