"""The ByteTrack association step, from the ``edgefirst-tracker`` package (Apache-2.0).

Why this library: it is ByteTrack (Kalman filter + IoU matching in two passes, high-score
detections first, then the low-score ones only to keep tracks alive), compiled (Rust), with
numpy as its only dependency, and wheels for Linux aarch64. Its track lifetime is given in
nanoseconds of the timestamps it is fed, not in frames, which is what a live camera that
drops frames needs. Its track identities are UUIDs, never reused; edged maps them to small
integers (see edged.tracking.ids). Roboflow's ``trackers`` (Apache-2.0) pulls supervision,
matplotlib, PyAV and opencv-python (which clashes with opencv-python-headless); supervision
(MIT) pulls matplotlib and PyAV; norfair (BSD-3) pins numpy < 2; Ultralytics' trackers are AGPL.
"""

from __future__ import annotations

import numpy as np
from edgefirst.tracker import ByteTrack

from edged.postprocess.decoders import Detections

# How far each match pulls a track's Kalman state to the detection. The library's default (0.25)
# loses objects that stop or turn: a box pausing for 5 frames at 30 fps got 3 IDs, and 8 random
# walkers with stops and missed detections (8 seeds, 400 frames) had 25 ID switches at 0.25,
# 1 at 0.5 and 0.8, 0 at 0.95 (kept in tests/unit/test_tracking.py as exact sequences).
KALMAN_UPDATE = 0.95


class Associator:
    """Assigns each detection of a frame to a track identity (or none), given the frame's time."""

    def __init__(self, high_threshold: float, match_iou: float, track_buffer_s: float) -> None:
        self._tracker = ByteTrack(
            high_conf=high_threshold,
            iou=match_iou,
            update=KALMAN_UPDATE,
            lifespan_ns=round(track_buffer_s * 1e9),
        )

    def update(self, detections: Detections, t_ns: int) -> list[str | None]:
        """Track keys per detection, ``None`` for one that neither matched nor started a track."""
        # edgefirst-tracker takes float32 boxes/scores and uint64 labels only.
        result = self._tracker.update(
            np.ascontiguousarray(detections.boxes, np.float32).reshape(-1, 4),
            np.ascontiguousarray(detections.scores, np.float32),
            np.ascontiguousarray(detections.class_ids, np.uint64),
            t_ns,
        )
        return [None if info is None else info.uuid for info in result]

    def alive(self) -> set[str]:
        """Keys of the tracks still kept (matched within the track buffer)."""
        return {active.info.uuid for active in self._tracker.get_active_tracks()}
