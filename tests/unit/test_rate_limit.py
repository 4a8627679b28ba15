"""A camera's fps_limit at capture: frames read sooner than the limit allows are skipped."""

from __future__ import annotations

import itertools

from edged.pipeline.stages.capture import RateLimit


def admitted(limit: RateLimit, times: list[float]) -> list[float]:
    return [t for t in times if limit.admit(t)]


def test_a_30fps_camera_limited_to_10fps_keeps_every_third_frame_despite_jitter() -> None:
    frames = [i / 30 + (0.002 if i % 2 else -0.002) for i in range(1, 91)]  # 3 s, ±2 ms
    kept = admitted(RateLimit(10.0), frames)
    assert len(kept) == 30
    gaps = [b - a for a, b in itertools.pairwise(kept)]
    assert min(gaps) > 0.09 and max(gaps) < 0.11


def test_a_source_slower_than_the_limit_loses_nothing_and_a_pause_does_not_burst() -> None:
    limit = RateLimit(10.0)
    slow = [i * 0.2 for i in range(10)]  # 5 fps under a 10 fps limit
    assert admitted(limit, slow) == slow
    # After a 5 s gap the schedule restarts from the next frame instead of catching up.
    after = [7.0 + i / 30 for i in range(30)]
    assert len(admitted(limit, after)) == 10
