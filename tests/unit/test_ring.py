"""Shared-memory rings and the clean-up of rings left by a dead supervisor."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from edged.pipeline.ring import RingSpec, aligned, attach_ring, create_ring
from edged.pipeline.shm_cleanup import owner_pid, remove_stale_segments


@pytest.fixture
def spec() -> RingSpec:
    return RingSpec(f"edgedtest_{os.getpid()}_{uuid.uuid4().hex[:6]}", 3, 1000)


@pytest.fixture
def ring(spec: RingSpec):
    r = create_ring(spec)
    yield r
    r.close()
    r.unlink()


def test_slots_are_aligned_and_separate(ring, spec: RingSpec) -> None:
    assert spec.stride % 64 == 0 and spec.stride >= 64 + 1000
    views = [ring.array(i, (1000,), np.uint8) for i in range(3)]
    for i, view in enumerate(views):
        view[:] = i + 1
        assert view.ctypes.data % 64 == 0
    assert [int(v[0]) for v in views] == [1, 2, 3] and [int(v[-1]) for v in views] == [1, 2, 3]


def test_a_fresh_ring_holds_nothing_and_marks_track_sequence_numbers(ring) -> None:
    assert ring.latest_seq() == -1
    assert not ring.holds(0, 0)
    ring.mark(1, 41)
    ring.mark(2, 7)
    assert ring.holds(1, 41) and not ring.holds(1, 7)
    assert ring.latest_seq() == 41


def test_views_that_do_not_fit_a_slot_are_refused(ring) -> None:
    ring.array(0, (10, 10), np.float64, offset=200)  # 800 bytes at 200: fits exactly
    for shape, dtype, offset in [((1001,), np.uint8, 0), ((251,), np.float32, 0),
                                 ((10, 10), np.float64, 201)]:  # fmt: skip
        with pytest.raises(ValueError, match="do not fit"):
            ring.array(0, shape, dtype, offset)


def test_another_process_sees_the_same_memory(ring, spec: RingSpec) -> None:
    ring.array(2, (4,), np.int32)[:] = [1, 2, 3, 4]
    ring.mark(2, 99)
    code = (
        "import sys, numpy as np; from edged.pipeline.ring import RingSpec, attach_ring;"
        f"r = attach_ring(RingSpec({spec.name!r}, 3, 1000));"
        # a process outside edged's spawn tree has its own resource tracker, which would unlink
        # the segment at exit (CPython gh-82300); stages share the supervisor's instead
        "from multiprocessing import resource_tracker as t; t.unregister(r._shm._name, "
        "'shared_memory');"
        "assert r.holds(2, 99); a = r.array(2, (4,), np.int32); print(int(a.sum())); a[0] = 10;"
        "r.close()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "10", out.stderr
    assert int(ring.array(2, (4,), np.int32)[0]) == 10


def test_attaching_to_a_missing_or_smaller_segment_fails(spec: RingSpec, ring) -> None:
    with pytest.raises(FileNotFoundError):
        attach_ring(RingSpec(spec.name + "x", 3, 1000))
    with pytest.raises(ValueError, match="smaller than its spec"):
        attach_ring(RingSpec(spec.name, 30, 100_000))


def test_close_survives_live_views_and_unlink_twice(spec: RingSpec) -> None:
    r = create_ring(spec)
    view = r.array(0, (10,), np.uint8)  # still referenced: close must not raise BufferError
    r.close()
    r.unlink()
    r.unlink()
    assert not Path(f"/dev/shm/{spec.name}").exists()
    del view


def test_aligned() -> None:
    assert [aligned(n) for n in (0, 1, 64, 65, 128)] == [0, 64, 64, 128, 128]


# -- stale segment clean-up ---------------------------------------------------------------------


def test_owner_pid_parses_only_edged_names() -> None:
    assert owner_pid("edged_1234_ab12cd_frames", "edged") == 1234
    for name in ("edged_x_ab_frames", "edgedx_1_a", "other_12_a_b", "edged_12", "sem.mp-xyz"):
        assert owner_pid(name, "edged") is None


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has it now (reuse within the test is unlikely)


def test_remove_stale_segments_only_takes_dead_owners(tmp_path: Path) -> None:
    dead = dead_pid()
    names = {
        f"edged_{dead}_aa11bb_frames": True,  # removed
        f"edged_{dead}_aa11bb_tensors": True,
        f"edged_{os.getpid()}_cc22dd_frames": False,  # owner alive
        "edged_1_ee33ff_frames": False,  # pid 1 is alive (PermissionError counts as alive too)
        "edged_notapid_x_y": False,
        "sem.mp-12345": False,
        f"other_{dead}_x_y": False,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_segments("edged", tmp_path)
    assert sorted(removed) == sorted(n for n, stale in names.items() if stale)
    assert {p.name for p in tmp_path.iterdir()} == {n for n, stale in names.items() if not stale}


def test_remove_stale_segments_without_a_directory(tmp_path: Path) -> None:
    assert remove_stale_segments("edged", tmp_path / "missing") == []


def test_a_real_stale_ring_is_removed(spec: RingSpec) -> None:
    dead = dead_pid()
    stale = RingSpec(f"edged_{dead}_{uuid.uuid4().hex[:6]}_frames", 2, 64)
    r = create_ring(stale)
    r.close()
    try:
        assert stale.name in remove_stale_segments("edged")
        assert not Path(f"/dev/shm/{stale.name}").exists()
    finally:
        r.unlink()  # no-op if removed; else clean up
        # removed behind multiprocessing's back: stop its resource tracker warning at exit
        from multiprocessing import resource_tracker

        resource_tracker.unregister(f"/{stale.name}", "shared_memory")
