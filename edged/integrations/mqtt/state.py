"""A camera's state for MQTT, from its detection messages: counts, model, FPS, latency.

Pure bookkeeping with the clock passed in, so when a state is due (a count changed, or the
periodic refresh) is decided the same way in tests as in the bridge.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

WINDOW_S = 5.0  # FPS and latency are averaged over the messages of the last few seconds
DIRECTIONS = ("left_to_right", "right_to_left")


@dataclass
class _Sample:
    received: float
    seq: int
    timestamp: float
    end_to_end_ms: float | None
    infer_ms: float | None


@dataclass
class CameraState:
    """What the bridge knows about one camera; :meth:`snapshot` is the state topic's payload."""

    labels: tuple[str, ...]  # always in ``counts`` (zeros included), so templates can index
    state_interval_s: float = 5.0
    min_interval_s: float = 0.2
    counts: dict[str, int] = field(default_factory=dict)
    model: dict[str, str] = field(default_factory=dict)
    samples: deque[_Sample] = field(default_factory=lambda: deque(maxlen=512))
    last_published: float | None = None
    published_key: tuple[Any, ...] | None = None
    # With tracking: the tracks inside each zone and the crossings of each line, from the
    # events.<camera_id> messages seen since the bridge started.
    zones: dict[str, set[int]] | None = None
    lines: dict[str, dict[str, int]] | None = None
    tracks: int = 0

    def track(self, zones: tuple[str, ...], lines: tuple[str, ...]) -> CameraState:
        """Keep zone occupancy and line crossings for these zones and lines."""
        self.zones = {name: set() for name in zones}
        self.lines = {name: dict.fromkeys(DIRECTIONS, 0) for name in lines}
        return self

    def apply_event(self, event: dict[str, Any]) -> None:
        """One track event (events schema v1): zone_enter/exit, line_cross, track_end."""
        if self.zones is None or self.lines is None:
            return
        kind, track = event.get("type"), int(event["track_id"])
        if kind == "zone_enter" and event.get("zone") in self.zones:
            self.zones[event["zone"]].add(track)
        elif kind == "zone_exit" and event.get("zone") in self.zones:
            self.zones[event["zone"]].discard(track)
        elif kind == "track_end":  # ended inside a zone: no exit event comes
            for inside in self.zones.values():
                inside.discard(track)
        elif kind == "line_cross" and event.get("direction") in DIRECTIONS:
            counts = self.lines.get(str(event.get("line")))
            if counts is not None:
                counts[event["direction"]] += 1

    @property
    def stale_after_s(self) -> float:
        """No frame for this long: nothing is 'detected now' any more (source down, ended)."""
        return max(WINDOW_S, self.state_interval_s)

    def update(self, message: dict[str, Any], now: float) -> None:
        """Take one detections message (schema version 1)."""
        detections = message.get("detections", ())
        self.counts = dict(Counter(str(d["label"]) for d in detections))
        self.tracks = sum(1 for d in detections if d.get("track_id") is not None)
        model = message.get("model") or {}
        self.model = {k: str(model[k]) for k in ("name", "variant", "backend", "precision")
                      if k in model}  # fmt: skip
        latency = message.get("latency_ms") or {}
        self.samples.append(_Sample(now, int(message["seq"]), float(message["timestamp"]),
                                    latency.get("end_to_end"), latency.get("infer")))  # fmt: skip

    def _recent(self, now: float) -> list[_Sample]:
        return [s for s in self.samples if now - s.received <= WINDOW_S]

    def fps(self, now: float) -> float:
        """Frames per second the camera published, from ``seq`` and the frame timestamps, so a
        bridge that skips a backlog still reports the camera's rate."""
        recent = self._recent(now)
        if len(recent) < 2:
            return 0.0
        first, last = recent[0], recent[-1]
        span = last.timestamp - first.timestamp
        if span <= 0 or last.seq <= first.seq:  # a restart (seq back to 0) or one instant
            return 0.0
        return (last.seq - first.seq) / span

    def snapshot(self, now: float) -> dict[str, Any]:
        recent = self._recent(now)
        stale = not self.samples or now - self.samples[-1].received > self.stale_after_s
        counts = dict.fromkeys(self.labels, 0)
        if not stale:
            counts.update(self.counts)
        e2e = [s.end_to_end_ms for s in recent if s.end_to_end_ms is not None]
        infer = [s.infer_ms for s in recent if s.infer_ms is not None]
        tracking = {}
        if self.zones is not None and self.lines is not None:
            tracking = {
                "tracks": 0 if stale else self.tracks,
                "zones": {name: len(inside) for name, inside in self.zones.items()},
                "lines": {name: dict(counts) for name, counts in self.lines.items()},
            }
        return {
            **tracking,
            "counts": counts,
            "total": sum(counts.values()),
            "fps": round(self.fps(now), 2),
            "latency_ms": round(sum(e2e) / len(e2e), 1) if e2e else None,
            "infer_ms": round(sum(infer) / len(infer), 1) if infer else None,
            "model": self.model.get("name"),
            "variant": self.model.get("variant"),
            "backend": self.model.get("backend"),
            "precision": self.model.get("precision"),
            "seq": self.samples[-1].seq if self.samples else None,
        }

    def due(self, now: float) -> dict[str, Any] | None:
        """The state to publish now, or None: a change in the counts or the model goes out at
        once (at most every ``min_interval_s``), FPS and latency with the periodic refresh."""
        snap = self.snapshot(now)
        changing = [snap["counts"], snap.get("zones"), snap.get("lines"), snap.get("tracks")]
        key = (json.dumps(changing, sort_keys=True), snap["model"], snap["variant"])
        last = self.last_published
        if last is not None:
            if now - last < self.min_interval_s:
                return None
            if key == self.published_key and now - last < self.state_interval_s:
                return None
        self.last_published = now
        self.published_key = key
        return snap

    def forget_published(self) -> None:
        """After a reconnect: the broker may have lost what was published (send it again)."""
        self.last_published = None
        self.published_key = None
