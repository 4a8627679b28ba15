"""What tracking adds to a frame on its way from postprocess to publish (pickled between them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

NO_TRACK = -1  # a detection without a (confirmed) track: published as "track_id": null


@dataclass(frozen=True)
class TrackingSummary:
    """One frame's tracking, as the supervisor's metrics need it (travels to the supervisor)."""

    active: tuple[tuple[str, int], ...] = ()  # (label, confirmed tracks alive)
    zones: tuple[tuple[str, str, int], ...] = ()  # (zone, label, tracks inside)
    crossings: tuple[tuple[str, str, str], ...] = ()  # (line, label, direction) this frame
    seconds: float | None = None  # the tracker's time on this frame


@dataclass(frozen=True)
class TrackingResult:
    track_ids: np.ndarray  # int64, one per detection, NO_TRACK where none
    events: tuple[dict[str, Any], ...] = ()  # in order; publish adds the envelope
    active: dict[str, int] = field(default_factory=dict)  # label -> confirmed tracks alive
    zones: dict[tuple[str, str], int] = field(default_factory=dict)  # (zone, label) -> inside
    crossings: tuple[tuple[str, str, str], ...] = ()  # (line, label, direction) this frame
    seconds: float = 0.0  # time spent tracking this frame

    def summary(self, with_time: bool = True) -> TrackingSummary:
        return TrackingSummary(
            tuple(self.active.items()),
            tuple((z, label, n) for (z, label), n in self.zones.items()),
            self.crossings,
            self.seconds if with_time else None,
        )

    @staticmethod
    def empty(n: int = 0) -> TrackingResult:
        return TrackingResult(np.full(n, NO_TRACK, np.int64))
