"""The shared inference stage's scheduler: latest frame wins per camera, round-robin between
cameras, lossless keeps every frame in order per camera."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from edged.pipeline.scheduler import FairScheduler


@dataclass(frozen=True)
class F:
    camera: str
    seq: int
    end_of_stream: bool = False


def drain(s: FairScheduler[F]) -> list[tuple[str, int]]:
    out = []
    while (f := s.next()) is not None:
        out.append((f.camera, f.seq))
    return out


def test_lossless_keeps_every_frame_in_order_per_camera_and_alternates_cameras() -> None:
    s: FairScheduler[F] = FairScheduler(lossless=True)
    for seq in range(3):
        assert s.add(F("a", seq)) == []
    for seq in range(2):
        assert s.add(F("b", seq)) == []
    s.add(F("b", 2, end_of_stream=True))
    assert drain(s) == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert s.next() is None and len(s) == 0


def test_live_a_newer_frame_displaces_only_its_own_cameras_older_one() -> None:
    s: FairScheduler[F] = FairScheduler(lossless=False)
    s.add(F("a", 0))
    s.add(F("b", 0))
    assert s.add(F("a", 1)) == [F("a", 0)]  # dropped by the caller, counted for camera a
    assert s.add(F("a", 2, end_of_stream=True)) == []  # markers never displace nor go
    assert s.add(F("a", 3)) == [F("a", 1)]
    assert s.waiting("a") == 2 and s.waiting("b") == 1
    assert drain(s) == [("a", 2), ("b", 0), ("a", 3)]


def test_a_busy_camera_never_starves_a_slow_one() -> None:
    """A 30 fps and a 5 fps camera, inference keeping up with one frame per tick: every frame
    of the slow camera runs, and is never behind more than one frame of the fast one."""
    s: FairScheduler[F] = FairScheduler(lossless=False)
    ran: list[tuple[str, int]] = []
    dropped: Counter[str] = Counter()
    for tick in range(60):
        for _ in range(3):  # the fast camera delivers 3 frames per inference
            for stale in s.add(F("fast", tick * 3 + _)):
                dropped[stale.camera] += 1
        if tick % 6 == 0:
            for stale in s.add(F("slow", tick // 6)):
                dropped[stale.camera] += 1
        f = s.next()
        assert f is not None
        ran.append((f.camera, f.seq))
    slow = [seq for cam, seq in ran if cam == "slow"]
    assert slow == list(range(10))  # every slow frame, in order
    assert dropped["slow"] == 0 and dropped["fast"] > 0


def test_round_robin_is_even_when_every_camera_always_has_a_frame() -> None:
    s: FairScheduler[F] = FairScheduler(lossless=True)
    cams = ["a", "b", "c"]
    for seq in range(10):
        for cam in cams:
            s.add(F(cam, seq))
    first_15 = [s.next() for _ in range(15)]
    counts = Counter(f.camera for f in first_15 if f is not None)
    assert counts == {"a": 5, "b": 5, "c": 5}


def test_a_removed_camera_is_forgotten_and_its_waiting_frames_handed_back() -> None:
    """Review finding 13: a reload removed b. Its queued frames come back (the caller drops and
    counts them), and b holds no queue nor turn: a and c alternate as if b never was."""
    s: FairScheduler[F] = FairScheduler(lossless=True)
    for camera in "abc":
        s.add(F(camera, 0))
    s.add(F("b", 1))
    assert [(f.camera, f.seq) for f in s.forget("b")] == [("b", 0), ("b", 1)]
    assert s.forget("b") == [] and s.waiting("b") == 0
    assert s._queues.keys() == {"a", "c"}
    s.add(F("a", 1))
    assert drain(s) == [("a", 0), ("c", 0), ("a", 1)]


# -- live-mode displacement, pinned before folding it with StageRuntime.select_frames ----------


def test_live_markers_stay_in_arrival_order_and_the_newer_frame_queues_behind_them() -> None:
    s: FairScheduler[F] = FairScheduler(lossless=False)
    assert s.add(F("a", 0)) == []
    assert s.add(F("a", 1, end_of_stream=True)) == []  # a marker displaces nothing
    assert s.add(F("a", 2, end_of_stream=True)) == []
    assert s.add(F("a", 3)) == [F("a", 0)]
    assert drain(s) == [("a", 1), ("a", 2), ("a", 3)]


def test_live_a_frame_after_a_marker_runs_after_it() -> None:
    """The marker ends the stream before it (a restarted capture's first frame comes after)."""
    s: FairScheduler[F] = FairScheduler(lossless=False)
    s.add(F("a", 7, end_of_stream=True))
    assert s.add(F("a", 0)) == []
    assert drain(s) == [("a", 7), ("a", 0)]


def test_live_displaced_frames_come_back_oldest_first_and_the_camera_keeps_its_turn() -> None:
    s: FairScheduler[F] = FairScheduler(lossless=False)
    s.add(F("a", 0))
    s.add(F("b", 0))
    assert s.add(F("a", 1)) == [F("a", 0)]
    assert s.add(F("a", 2)) == [F("a", 1)]  # at most one data frame waits per camera
    assert drain(s) == [("a", 2), ("b", 0)]  # a displaced its frame, not its place in line


def test_latest_wins_is_the_one_rule_of_both_live_skippers() -> None:
    from edged.pipeline.scheduler import latest_wins

    frames = [F("a", 0), F("a", 1, True), F("a", 2), F("a", 3, True), F("a", 4)]
    assert latest_wins(frames) == (
        [F("a", 1, True), F("a", 3, True), F("a", 4)],
        [F("a", 0), F("a", 2)],
    )
    assert latest_wins([F("a", 1, True)]) == ([F("a", 1, True)], [])
    assert latest_wins([]) == ([], [])
