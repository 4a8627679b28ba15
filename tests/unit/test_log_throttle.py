"""Repeated per-frame failures: the first line at once, then one per interval with a count."""

from __future__ import annotations

from edged.log_throttle import LogThrottle


def test_one_line_per_interval_and_the_count_of_the_rest() -> None:
    now = [0.0]
    throttle = LogThrottle(interval_s=10.0, clock=lambda: now[0])
    assert throttle.allow("inference") == ""  # the first at once
    held = 0
    for _ in range(29):  # 30 frames a second for the next second
        now[0] += 1 / 30
        held += throttle.allow("inference") is None
    assert held == 29
    assert throttle.allow("handoff") == ""  # another kind has its own clock
    now[0] = 10.5
    assert throttle.allow("inference") == " (29 more like it in the last 10 s)"
    assert throttle.allow("inference") is None
    now[0] = 25.0
    assert throttle.allow("inference") == " (1 more like it in the last 14 s)"
