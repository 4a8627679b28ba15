"""Process layouts: which stages share a process, and how frames and commands move inside one."""

from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path
from typing import get_args

import pytest
import zmq

from edged.config import EdgedConfig, PipelineLayout
from edged.pipeline.endpoints import Endpoints
from edged.pipeline.layout import LAYOUTS, process_groups, process_name
from edged.pipeline.messages import STAGE_ORDER, Frame, Stats, Stop, decode_event, encode
from edged.pipeline.ring import RingSpec, create_ring
from edged.pipeline.stage_runtime import FRAMES, StageRuntime, StageSetup, link_local


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_runs_each_stage_once_in_pipeline_order(layout: str) -> None:
    groups = process_groups(layout)
    assert tuple(stage for group in groups for stage in group) == STAGE_ORDER
    assert ("infer",) in groups  # inference never shares its process: the rest overlaps with it


def test_fused_pairs_the_light_stages_around_inference() -> None:
    groups = process_groups("fused")
    assert [process_name(g) for g in groups] == ["capture+preprocess", "infer",
                                                 "postprocess+publish"]  # fmt: skip


def test_the_config_offers_exactly_the_layouts_there_are() -> None:
    assert set(get_args(PipelineLayout)) == set(LAYOUTS)


def test_config_rejects_an_unknown_layout() -> None:
    with pytest.raises(ValueError, match="layout"):
        EdgedConfig.model_validate({"pipeline": {"layout": "one-big-process"}})


class Group:
    """The runtimes of a postprocess+publish process, with a supervisor socket to talk to it."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "run"
        self.dir.mkdir()
        self.config = EdgedConfig.model_validate({"pipeline": {"layout": "fused"}})
        self.spec = RingSpec(f"edgedtest_{os.getpid()}_{uuid.uuid4().hex[:6]}", 4, 64)
        self.ring = create_ring(self.spec)
        ctx = zmq.Context.instance()
        self.supervisor = ctx.socket(zmq.ROUTER)
        self.supervisor.setsockopt(zmq.LINGER, 0)
        self.supervisor.bind(Endpoints(self.dir).supervisor)
        self.release = ctx.socket(zmq.PULL)  # stands in for capture, the frame ring's owner
        self.release.setsockopt(zmq.LINGER, 0)
        self.release.bind(Endpoints(self.dir).ring_release(FRAMES))
        group = ("postprocess", "publish")
        peers: list[StageRuntime] = []
        self.runtimes = [
            StageRuntime(
                StageSetup(stage, self.config, self.dir, {FRAMES: self.spec}, False, group=group),
                ctx,
                peers,
            )
            for stage in group
        ]

    def close(self) -> None:
        for rt in self.runtimes:
            rt.close()
        self.supervisor.close()
        self.release.close()
        self.ring.close()
        self.ring.unlink()


@pytest.fixture
def group(tmp_path: Path):
    g = Group(tmp_path)
    yield g
    g.close()


def test_only_the_process_boundaries_get_sockets(group: Group) -> None:
    leader, follower = group.runtimes
    assert leader.inbox is not None and leader.outbox is None  # postprocess → publish: a call
    assert follower.inbox is None and follower.outbox is None  # publish is last
    assert not (group.dir / "publish.in").exists()


def test_frames_pass_by_call_and_a_failure_frees_the_frame(group: Group) -> None:
    leader, follower = group.runtimes
    seen: list[int] = []

    def publish(frame: Frame) -> None:
        if frame.seq == 2:
            raise RuntimeError("broken frame")
        seen.append(frame.seq)

    link_local(leader, follower, publish)
    for seq in range(4):
        assert leader.send_frame(Frame(seq, 0.0, 0.0, 8, 8, frame_slot=seq))
    assert seen == [0, 1, 3]
    assert follower._counters["error"] == 1  # counted where it failed
    assert group.release.poll(2000)
    assert struct.unpack("<qq", group.release.recv()) == (2, 2)  # the failed frame's slot
    assert not group.release.poll(100)  # and only that one


def test_a_command_for_either_stage_is_answered_by_the_process_loop(group: Group) -> None:
    leader, follower = group.runtimes
    assert not leader.stopping
    # The supervisor addresses the follower; the leader is the one waiting in poll().
    poll_until_identity(group, b"publish")
    group.supervisor.send_multipart((b"publish", encode(Stop())))
    for _ in range(50):
        leader.poll(100)
        if leader.stopping:
            break
    assert leader.stopping and follower.stopping


def poll_until_identity(group: Group, identity: bytes) -> None:
    """ROUTER only routes to peers it has heard from: let the stage say hello first."""
    rt = next(r for r in group.runtimes if r.stage.encode() == identity)
    rt.send_event(Stats({}, 0))
    assert group.supervisor.poll(2000)
    got, payload = group.supervisor.recv_multipart()
    assert got == identity and decode_event(payload) == Stats({}, 0)
