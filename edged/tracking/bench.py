"""``edged tracking bench``: the tracker's cost per frame (association, zones, lines).

Synthetic detections (``n`` boxes on random walks, some lost and found again, a tenth below the
high-score threshold) at 30 fps through one CameraTracker with two zones and two lines, timed
per ``update`` call; the first frames (tracks being born) are warm-up and not counted.

Both clocks are reported: wall time (what a frame waits, including any time the OS gave the
core to another process) and this thread's CPU time (the tracker's own cost, which is what the
0.5 ms target is about on a machine shared with other work).
"""

from __future__ import annotations

import time

import numpy as np

from edged.postprocess.decoders import Detections
from edged.tracking.camera import CameraTracker, FrameInfo
from edged.tracking.config import TrackingConfig

W, H = 1280, 720
LABELS = tuple(f"class{i}" for i in range(80))
BENCH_CONFIG = {
    "enabled": True,
    "zones": [
        {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]},
        {"name": "band", "polygon": [[0.1, 0.4], [0.9, 0.4], [0.9, 0.6], [0.1, 0.6]]},
    ],
    "lines": [
        {"name": "mid", "points": [[0.5, 0], [0.5, 1]]},
        {"name": "row", "points": [[0, 0.5], [1, 0.5]]},
    ],
}


def synthetic_frames(n: int, frames: int, seed: int = 0) -> list[Detections]:
    rng = np.random.default_rng(seed)
    pos = rng.uniform((50, 50), (W - 50, H - 50), (n, 2))
    vel = rng.normal(0, 3, (n, 2))
    size = rng.uniform(20, 90, (n, 2))
    classes = rng.integers(0, 3, n)
    out = []
    for _ in range(frames):
        vel = np.clip(vel + rng.normal(0, 0.5, (n, 2)), -8, 8)
        pos = np.clip(pos + vel, 50, (W - 50, H - 50))
        boxes = np.concatenate([pos - size / 2, pos + size / 2], 1) + rng.normal(0, 1, (n, 4))
        scores = np.where(rng.random(n) < 0.1, 0.3, rng.uniform(0.55, 0.95, n))
        seen = rng.random(n) > 0.05  # a detection missed now and then
        out.append(Detections(boxes[seen].astype(np.float32), scores[seen].astype(np.float32),
                              classes[seen].astype(np.int64)))  # fmt: skip
    return out


def bench(n: int = 50, frames: int = 2000, warmup: int = 50) -> dict[str, float]:
    """Seconds per ``update``: p50, p99, max (and the tracks alive at the end)."""
    cfg = TrackingConfig.model_validate(BENCH_CONFIG)
    tracker = CameraTracker("bench", cfg)
    wall, cpu = [], []
    for i, dets in enumerate(synthetic_frames(n, frames + warmup)):
        info = FrameInfo(i, 0.0, i / 30, W, H)
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        result = tracker.update(dets, LABELS, info)
        if i >= warmup:
            cpu.append(time.thread_time_ns() - start_cpu)
            wall.append(time.perf_counter_ns() - start)
    summary: dict[str, float] = {"detections": n, "frames": frames,
                                 "tracks_alive": sum(result.active.values())}  # fmt: skip
    for name, values in (("wall", wall), ("cpu", cpu)):
        t = np.array(values) / 1e6
        summary |= {f"{name}_p50_ms": float(np.percentile(t, 50)),
                    f"{name}_p99_ms": float(np.percentile(t, 99)),
                    f"{name}_max_ms": float(t.max())}  # fmt: skip
    return summary
