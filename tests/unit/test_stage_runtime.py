"""Credit-based slot flow control: the allocator, stale releases after restarts, live skipping."""

from __future__ import annotations

import struct
import uuid

import pytest
import zmq

from edged.pipeline.messages import Frame
from edged.pipeline.stage_runtime import SlotAllocator

RELEASE = struct.Struct("<qq")


@pytest.fixture
def sockets():
    ctx = zmq.Context.instance()
    endpoint = f"inproc://release-{uuid.uuid4().hex}"
    pull = ctx.socket(zmq.PULL)
    pull.bind(endpoint)
    push = ctx.socket(zmq.PUSH)
    push.connect(endpoint)
    yield pull, push
    pull.close(0)
    push.close(0)


def release(push: zmq.Socket, slot: int, seq: int) -> None:
    push.send(RELEASE.pack(slot, seq))


def settle(alloc: SlotAllocator, pull: zmq.Socket) -> None:
    """Wait until released messages have arrived (inproc is fast but asynchronous)."""
    pull.poll(1000)
    alloc.collect()


def test_slots_are_handed_out_once_until_released(sockets) -> None:
    pull, push = sockets
    alloc = SlotAllocator(3, pull)
    got = [alloc.try_acquire(seq) for seq in range(3)]
    assert sorted(got) == [0, 1, 2] and alloc.in_use == 3
    assert alloc.try_acquire(3) is None
    release(push, got[1], 1)
    settle(alloc, pull)
    assert alloc.try_acquire(4) == got[1]
    assert alloc.in_use == 3


def test_a_stale_release_never_frees_the_slots_new_occupant(sockets) -> None:
    """After a restart the slot of a lost frame is reclaimed and reused; the lost frame's late
    release (its old seq) must not free the new frame's slot."""
    pull, push = sockets
    alloc = SlotAllocator(2, pull)
    slot = alloc.try_acquire(10)
    alloc.try_acquire(11)
    alloc.reclaim_all()  # a consumer restarted: every slot back
    assert alloc.in_use == 0
    again = [alloc.try_acquire(20), alloc.try_acquire(21)]
    assert slot in again
    release(push, slot, 10)  # the old occupant's release arrives late
    settle(alloc, pull)
    assert alloc.in_use == 2 and alloc.try_acquire(22) is None
    release(push, slot, 20 if again[0] == slot else 21)
    settle(alloc, pull)
    assert alloc.try_acquire(23) == slot


def test_duplicate_and_unknown_releases_are_ignored(sockets) -> None:
    pull, push = sockets
    alloc = SlotAllocator(2, pull)
    slot = alloc.try_acquire(5)
    for msg in [(slot, 5), (slot, 5), (1 - slot, 99), (7, 5)]:
        release(push, *msg)
    settle(alloc, pull)
    assert alloc.in_use == 0
    assert sorted([alloc.try_acquire(6), alloc.try_acquire(7)]) == [0, 1]
    assert alloc.try_acquire(8) is None  # the duplicate did not create a third slot


def test_reclaiming_one_slot(sockets) -> None:
    pull, _ = sockets
    alloc = SlotAllocator(1, pull)
    slot = alloc.try_acquire(1)
    alloc.reclaim_slot(slot)
    alloc.reclaim_slot(slot)  # twice: still one slot
    assert alloc.try_acquire(2) == slot and alloc.try_acquire(3) is None


def test_reclaim_all_frees_every_slot_and_counts_itself(sockets) -> None:
    """A stage waiting to hand a frame on compares this count to know its slot was taken."""
    pull, _ = sockets
    alloc = SlotAllocator(2, pull)
    held = {alloc.try_acquire(1), alloc.try_acquire(2)}
    assert alloc.try_acquire(3) is None and alloc.reclaims == 0
    alloc.reclaim_all()
    assert alloc.reclaims == 1 and alloc.in_use == 0
    assert {alloc.try_acquire(4), alloc.try_acquire(5)} == held


def test_select_frames_keeps_the_newest_and_end_of_stream() -> None:
    from edged.pipeline.stage_runtime import StageRuntime

    dropped: list[int] = []

    class Fake:
        lossless = False

        def drop(self, frame: Frame, outcome: str = "dropped") -> None:
            dropped.append(frame.seq)

    frames = [Frame(i, 0.0, 0.0, 1, 1, i) for i in range(4)]
    eos = Frame(4, 0.0, 0.0, 0, 0, -1, end_of_stream=True)
    fake = Fake()
    assert StageRuntime.select_frames(fake, [*frames, eos]) == [frames[-1], eos]  # type: ignore[arg-type]
    assert dropped == [0, 1, 2]
    fake.lossless = True
    dropped.clear()
    assert StageRuntime.select_frames(fake, frames) == frames  # type: ignore[arg-type]
    assert dropped == []


def live_selection(frames: list[Frame]) -> tuple[list[Frame], list[int]]:
    """What a live preprocess stage runs of one poll's ``frames``, and the seqs it drops."""
    from edged.pipeline.stage_runtime import StageRuntime

    dropped: list[int] = []

    class Fake:
        lossless = False

        def drop(self, frame: Frame, outcome: str = "dropped") -> None:
            assert outcome == "dropped"
            dropped.append(frame.seq)

    return StageRuntime.select_frames(Fake(), frames), dropped  # type: ignore[arg-type]


def data(seq: int) -> Frame:
    return Frame(seq, 0.0, 0.0, 1, 1, seq)


def marker(seq: int) -> Frame:
    return Frame(seq, 0.0, 0.0, 0, 0, -1, end_of_stream=True)


def test_select_frames_leaves_one_frame_and_markers_alone() -> None:
    assert live_selection([data(0)]) == ([data(0)], [])
    assert live_selection([marker(0)]) == ([marker(0)], [])
    assert live_selection([marker(0), marker(1)]) == ([marker(0), marker(1)], [])


def test_select_frames_drops_the_older_frames_oldest_first_and_keeps_every_marker() -> None:
    kept, dropped = live_selection([data(0), marker(1), data(2), marker(3), data(4)])
    assert dropped == [0, 2]
    assert kept == [marker(1), marker(3), data(4)]  # in arrival order, as FairScheduler keeps


def test_select_frames_keeps_a_frame_that_came_after_a_marker_after_it() -> None:
    """A restarted capture's first frame behind the old stream's marker: the marker ends the
    stream before it (it used to be moved behind the new frame, ending the new stream's tracks;
    FairScheduler already kept arrival order)."""
    assert live_selection([marker(5), data(0)]) == ([marker(5), data(0)], [])
