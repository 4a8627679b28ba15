"""The postprocess and publish stages on a real runtime (rings, the supervisor's channel, the
publisher and preview sockets): a reload's Cameras command that removes a camera makes them
forget it (its tracker, its topics, its preview tap), and one that adds it again under new
rings gives it a tap on the new frames ring."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from edged.config import CameraConfig, parse_config
from edged.pipeline.endpoints import Endpoints
from edged.pipeline.messages import POSTPROCESS, PUBLISH, Cameras, Frame, encode
from edged.pipeline.ring import RingSpec, SharedRing, create_ring
from edged.pipeline.stage_runtime import FRAMES, OUTPUTS, StageRuntime, StageSetup, ring_key
from edged.pipeline.stages import postprocess, publish

CAMERAS = (CameraConfig(id="a"), CameraConfig(id="b"))


class Stages:
    def __init__(self, tmp_path: Path) -> None:
        self.tag = f"edgedtest_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.run = tmp_path / "run"
        self.run.mkdir()
        self.config = parse_config({
            "publish": {"endpoint": f"ipc://{tmp_path}/pub.sock"},
            "preview": {"enabled": True}, "tracking": {"enabled": True},
        })  # fmt: skip
        self.segments: list[SharedRing] = []
        self.specs = {ring_key(FRAMES, c.id): self.ring(f"f{c.id}") for c in CAMERAS}
        self.specs[OUTPUTS] = self.ring("o")
        self.supervisor = zmq.Context.instance().socket(zmq.ROUTER)
        self.supervisor.setsockopt(zmq.LINGER, 0)
        self.supervisor.bind(Endpoints(self.run).supervisor)
        self.runtimes = {stage: StageRuntime(StageSetup(stage, self.config, self.run,
                                                        dict(self.specs), False, cameras=CAMERAS))
                         for stage in (POSTPROCESS, PUBLISH)}  # fmt: skip
        self.post = postprocess.open_stage(self.runtimes[POSTPROCESS])
        stage = publish.open_stage(self.runtimes[PUBLISH])
        assert stage is not None
        self.pub = stage

    def ring(self, name: str) -> RingSpec:
        spec = RingSpec(f"{self.tag}_{name}_{len(self.segments)}", 2, 64 * 48 * 3)
        self.segments.append(create_ring(spec))
        return spec

    def cameras(self, *cameras: CameraConfig) -> None:
        """The supervisor's Cameras command to both stages, answered as in their loop."""
        command = Cameras(cameras, {k: v for k, v in self.specs.items()
                                    if k == OUTPUTS or k.split(".", 1)[1] in
                                    {c.id for c in cameras}})  # fmt: skip
        for stage, rt in self.runtimes.items():
            self.supervisor.send_multipart((stage.encode(), encode(command)))
            assert rt.supervisor.poll(30_000), "the command never arrived"
            rt.handle_commands()
        self.pub.service()  # the publish loop's turn

    def close(self) -> None:
        self.post.close()
        self.pub.close()
        for rt in self.runtimes.values():
            rt.close()
        self.supervisor.close(0)
        for ring in self.segments:
            ring.close()
            ring.unlink()


@pytest.fixture
def stages(tmp_path: Path) -> Iterator[Stages]:
    s = Stages(tmp_path)
    yield s
    s.close()


def test_a_removed_camera_is_forgotten_and_one_added_again_gets_a_tap_on_its_new_ring(
    stages: Stages,
) -> None:
    s = stages
    for camera in ("a", "b"):  # each camera's tracker, made on its first frame
        s.post.tracker_of(Frame(0, 0.0, 0.0, 64, 48, 0, camera=camera))
    assert set(s.post._trackers) == {"a", "b"}
    assert set(s.pub.topics) == set(s.pub.previews) == {"a", "b"}
    s.cameras(CAMERAS[0])  # b removed
    assert set(s.post._trackers) == {"a"}
    assert set(s.pub.topics) == set(s.pub.previews) == {"a"}
    assert s.pub.subs.topics == (b"detections.a",)
    s.specs[ring_key(FRAMES, "b")] = s.ring("fb")  # b again, with rings of its own
    s.cameras(*CAMERAS)
    assert set(s.pub.topics) == set(s.pub.previews) == {"a", "b"}
    tap = s.pub.previews["b"]
    assert tap.ring is s.runtimes[PUBLISH].rings[ring_key(FRAMES, "b")]
    assert tap.ring.spec.name == s.specs[ring_key(FRAMES, "b")].name
