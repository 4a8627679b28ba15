"""Frames in flight in the inference stage, on a real runtime (rings, sockets, the supervisor's
command channel) with a fake in-flight backend whose completions the test decides: frames that
finish out of order, a camera a reload removes mid-flight, a Reclaim mid-flight, a publish path
that fails. No sleeps stand in for ordering: the test finishes each frame itself."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zmq

from edged.backends import TensorSpec
from edged.config import CameraConfig, EdgedConfig
from edged.models import ResolvedVariant
from edged.pipeline.endpoints import Endpoints
from edged.pipeline.messages import (
    INFER,
    Cameras,
    Frame,
    InferenceReady,
    ModelDescriptor,
    Reclaim,
    decode_event,
    encode,
)
from edged.pipeline.ring import RingSpec, SharedRing, create_ring
from edged.pipeline.stage_runtime import (
    FRAMES,
    OUTPUTS,
    TENSORS,
    StageRuntime,
    StageSetup,
    ring_key,
)
from edged.pipeline.stages import inference
from edged.pipeline.stages.inflight import InFlight, Running
from tests.daemon import poll_until

MODEL = ModelDescriptor("m/fp32/0", "m", "fp32", "fake", "fp32", 4, 4, "NHWC", "uint8",
                        "yolov5", ("person",))  # fmt: skip
RESOLVED = ResolvedVariant("m", "fp32", "fake", Path("/nonexistent/m.onnx"), "fp32", "auto",
                           "auto")  # fmt: skip
OUTPUT_SHAPE = (1, 2)


@dataclass(eq=False)  # identity: a job is one frame
class Job:
    tensor: np.ndarray
    outputs: list[np.ndarray]
    on_done: Callable[[], None]
    done: bool = False
    waited: bool = False


class ControlledBackend:
    """Runs nothing by itself: a submitted frame finishes when the test calls :meth:`finish`
    (its output: the tensor's first byte, i.e. which frame it was). ``wait`` on a frame not
    finished yet finishes it, as a real backend's wait returns once the device is done."""

    input = TensorSpec("input", 4, 4, "NHWC", "uint8")
    precision = "fp32"
    static_outputs = True

    def __init__(self, requests: int) -> None:
        self.output_shapes = [OUTPUT_SHAPE]
        self.metadata: dict[str, str] = {}
        self.requests_in_flight = requests
        self.jobs: list[Job] = []
        self.on_finish: Callable[[Job], None] = lambda job: None
        self.closed = False

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return [np.full(OUTPUT_SHAPE, float(tensor.flat[0]), np.float32)]

    def submit(self, tensor: np.ndarray, outputs: list[np.ndarray],
               on_done: Callable[[], None]) -> Job:  # fmt: skip
        assert sum(not j.waited for j in self.jobs) < self.requests_in_flight, "too many"
        job = Job(tensor, outputs, on_done)
        self.jobs.append(job)
        return job

    def finish(self, index: int) -> None:
        job = self.jobs[index]
        assert not job.done
        self.on_finish(job)
        job.outputs[0][...] = float(job.tensor.flat[0])  # the backend reads the tensor now
        job.done = True
        job.on_done()

    def wait(self, handle: object) -> None:
        assert isinstance(handle, Job)
        if not handle.done:
            self.finish(self.jobs.index(handle))
        handle.waited = True

    def close(self) -> None:
        self.closed = True


class Harness:
    """The inference stage on a real runtime: two cameras' rings, the shared outputs ring, the
    supervisor's ROUTER; frames it hands on are collected (the next stage, in process)."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, requests: int = 2,
                 output_slots: int = 4) -> None:  # fmt: skip
        tag = f"edgedtest_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.cameras = (CameraConfig(id="a"), CameraConfig(id="b"))
        self.specs = {ring_key(kind, cam.id): RingSpec(f"{tag}_{kind[0]}{cam.id}", 4, 64)
                      for cam in self.cameras for kind in (FRAMES, TENSORS)}  # fmt: skip
        self.specs[OUTPUTS] = RingSpec(f"{tag}_o", output_slots, 256)
        self.rings = {key: create_ring(spec) for key, spec in self.specs.items()}
        run = tmp_path / "run"
        run.mkdir()
        self.supervisor = zmq.Context.instance().socket(zmq.ROUTER)
        self.supervisor.setsockopt(zmq.LINGER, 0)
        self.supervisor.bind(Endpoints(run).supervisor)
        self.backend = ControlledBackend(requests)
        monkeypatch.setattr(inference, "load_model",
                            lambda *args, **kwargs: (self.backend, MODEL))  # fmt: skip
        setup = StageSetup(INFER, EdgedConfig(), run, dict(self.specs), lossless=True,
                           extra={"resolved": RESOLVED}, cameras=self.cameras)  # fmt: skip
        self.rt = StageRuntime(setup)
        self.sent: list[Frame] = []
        self.rt.local_next = self.hand_on
        self.fail_next_send = False
        stage = inference.open_stage(self.rt)
        assert stage is not None
        self.stage = stage
        _identity, payload = self.supervisor.recv_multipart()  # the ROUTER knows the stage now
        assert isinstance(decode_event(payload), InferenceReady)
        self.seqs: dict[str, int] = {}

    def hand_on(self, frame: Frame) -> bool:
        if self.fail_next_send:
            self.fail_next_send = False
            raise RuntimeError("the next stage failed")
        self.sent.append(frame)
        return True

    def frame(self, camera: str) -> Frame:
        """The next frame of ``camera``, its tensor written into its tensor ring (first byte:
        ``seq * 10 + camera``'s number, so an output names its frame)."""
        seq = self.seqs.get(camera, 0)
        self.seqs[camera] = seq + 1
        tensors = self.rings[ring_key(TENSORS, camera)]
        slot = seq % tensors.spec.slots
        tensors.array(slot, MODEL.tensor_spec.shape, np.uint8)[...] = self.marker(camera, seq)
        tensors.mark(slot, seq)
        return Frame(seq, 0.0, 0.0, 4, 4, -1, tensor_slot=slot, tensor_layout=MODEL.tensor_tag,
                     camera=camera)  # fmt: skip

    @staticmethod
    def marker(camera: str, seq: int) -> int:
        return seq * 10 + (1 if camera == "a" else 2)

    def process(self, frame: Frame) -> None:
        self.rt.process_one(self.stage.process, frame)

    def output(self, frame: Frame) -> float:
        """What the published frame's output slot holds."""
        [ref] = frame.outputs
        return float(self.rt.rings[OUTPUTS].array(frame.output_slot, ref.shape, np.float32,
                                                  ref.offset)[0, 0])  # fmt: skip

    def command(self, command: object) -> None:
        """Over the supervisor's channel, answered by the runtime as in the daemon's loop."""
        self.supervisor.send_multipart((INFER.encode(), encode(command)))  # type: ignore[arg-type]
        assert self.rt.supervisor.poll(30_000), "the command never arrived"
        self.rt.handle_commands()

    def release_outputs(self, frames: list[Frame]) -> None:
        """As postprocess does: each published frame's output slot back, over its socket."""
        for frame in frames:
            self.rt.release(frame, OUTPUTS)

    def counted(self, camera: str, outcome: str) -> int:
        return self.rt._camera_counters.get(camera, {}).get(outcome, 0)

    def close(self) -> None:
        self.stage.close()
        self.rt.close()
        self.supervisor.close(0)
        for ring in self.rings.values():
            ring.close()
            ring.unlink()


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    h = Harness(tmp_path, monkeypatch)
    yield h
    h.close()


def all_free(h: Harness) -> bool:
    h.rt.allocator.collect()
    return h.rt.allocator.in_use == 0


def test_the_capacity_is_the_backends_requests(harness: Harness) -> None:
    assert harness.stage.capacity == 2


def test_frames_finishing_out_of_order_are_published_in_order(harness: Harness) -> None:
    h = harness
    a0, b0 = h.frame("a"), h.frame("b")
    h.process(a0)
    h.process(b0)
    assert len(h.backend.jobs) == 2 and not h.sent  # both in flight at once
    h.backend.finish(1)  # b0 first
    h.stage.service()
    assert not h.sent  # never one out of order: a0 is still running
    h.backend.finish(0)
    h.stage.service()
    assert [(f.camera, f.seq) for f in h.sent] == [("a", 0), ("b", 0)]
    assert [h.output(f) for f in h.sent] == [h.marker("a", 0), h.marker("b", 0)]
    assert h.counted("a", "ok") == 1 and h.counted("b", "ok") == 1
    h.release_outputs(h.sent)
    poll_until(lambda: all_free(h), 30.0, lambda: f"{h.rt.allocator.in_use} slots held")


def test_a_third_frame_waits_for_the_oldest_and_order_holds(harness: Harness) -> None:
    h = harness
    frames = [h.frame("a"), h.frame("b"), h.frame("a")]
    h.process(frames[0])
    h.process(frames[1])
    h.backend.finish(1)
    h.process(frames[2])  # capacity 2: a0 is finished (waited for) and handed on first
    assert [(f.camera, f.seq) for f in h.sent] == [("a", 0), ("b", 0)]
    h.stage.drain()
    assert [(f.camera, f.seq) for f in h.sent] == [("a", 0), ("b", 0), ("a", 1)]
    assert [h.output(f) for f in h.sent] == [h.marker(f.camera, f.seq) for f in frames]
    h.release_outputs(h.sent)
    poll_until(lambda: all_free(h), 30.0, lambda: f"{h.rt.allocator.in_use} slots held")


def test_a_camera_removed_mid_flight_is_finished_dropped_and_its_slot_freed(
    harness: Harness,
) -> None:
    """Review finding 1: b's frame in flight when a reload removes b. It is waited for while
    b's rings are still attached, counted dropped for b, its output slot taken back; a's frame
    in flight goes on and is published; service() never raises."""
    h = harness
    a0, b0 = h.frame("a"), h.frame("b")
    h.process(a0)
    h.process(b0)
    attached_at_finish: dict[str, bool] = {}

    def probe(job: Job) -> None:
        marker = int(job.tensor.flat[0])
        attached_at_finish[str(marker)] = ring_key(TENSORS, "b") in h.rt.rings

    h.backend.on_finish = probe
    kept = {k: s for k, s in h.specs.items() if not k.endswith(".b")}
    h.command(Cameras((h.cameras[0],), kept))
    assert ring_key(TENSORS, "b") not in h.rt.rings
    assert attached_at_finish == {str(h.marker("b", 0)): True}  # finished before the close
    assert h.counted("b", "dropped") == 1
    h.backend.finish(0)
    h.stage.service()
    assert [(f.camera, f.seq) for f in h.sent] == [("a", 0)]
    assert h.output(h.sent[0]) == h.marker("a", 0)
    h.release_outputs(h.sent)
    poll_until(lambda: all_free(h), 30.0, lambda: f"{h.rt.allocator.in_use} slots held")


def test_a_frame_of_a_camera_gone_from_the_rings_is_dropped_not_raised(harness: Harness) -> None:
    """The publish path on its own: a finished frame whose camera's rings are gone."""
    h = harness
    b0 = h.frame("b")
    h.process(b0)
    h.backend.finish(0)
    h.rt.rings.pop(ring_key(TENSORS, "b")).close()  # as if nobody had told the stage
    h.stage.service()
    assert not h.sent and h.counted("b", "dropped") == 1
    assert all_free(h)


def test_a_reclaim_mid_flight_keeps_the_slots_frames_in_flight_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding 2: postprocess restarted (Reclaim(outputs)) while two frames are in
    flight. Their slots stay taken: the next frame gets another, and every output published is
    its own frame's."""
    h = Harness(tmp_path, monkeypatch, requests=2, output_slots=3)
    try:
        a0, b0 = h.frame("a"), h.frame("b")
        h.process(a0)
        h.process(b0)
        flying = {r.slot for r in h.stage.inflight}
        h.command(Reclaim(OUTPUTS))
        assert h.rt.allocator.reclaims == 1
        assert h.rt.allocator.in_use == 2  # the frames in flight still hold theirs
        free = h.rt.allocator.try_acquire(99, "x")
        assert free is not None and free not in flying
        h.rt.allocator.reclaim_slot(free)
        h.backend.finish(1)
        h.backend.finish(0)
        h.stage.service()
        assert [h.output(f) for f in h.sent] == [h.marker("a", 0), h.marker("b", 0)]
        h.release_outputs(h.sent)
        poll_until(lambda: all_free(h), 30.0, lambda: f"{h.rt.allocator.in_use} slots held")
    finally:
        h.close()


def test_a_late_release_of_another_cameras_frame_with_the_same_seq_frees_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding 2: seq counts per camera, so on the shared outputs ring a stale release
    (slot, seq) of a's frame 0 must not free the slot b's frame 0 now holds."""
    h = Harness(tmp_path, monkeypatch, requests=1, output_slots=1)
    try:
        a0 = h.frame("a")
        h.process(a0)  # one at a time: published at once, its slot held by "postprocess"
        [published_a0] = h.sent
        h.command(Reclaim(OUTPUTS))  # postprocess restarted: a0's slot is free again
        h.process(h.frame("b"))
        assert h.rt.allocator.in_use == 1  # b0 holds the one slot
        h.release_outputs([published_a0])  # a0's release arrives late
        assert h.rt.allocator.socket.poll(30_000)
        h.rt.allocator.collect()
        assert h.rt.allocator.in_use == 1, "a stale release freed b0's slot"
        h.release_outputs([h.sent[1]])  # then b0's: only now is the slot free
        poll_until(lambda: all_free(h), 30.0, lambda: f"{h.rt.allocator.in_use} slots held")
        assert h.rt.allocator.try_acquire(5, "a") == published_a0.output_slot
    finally:
        h.close()


def test_a_failure_handing_a_finished_frame_on_is_counted_not_raised(harness: Harness) -> None:
    """From service() (no frame being processed): one frame's failure is that frame's error;
    the stage carries on."""
    h = harness
    a0, a1 = h.frame("a"), h.frame("a")
    h.process(a0)
    h.process(a1)
    h.fail_next_send = True
    h.backend.finish(0)
    h.backend.finish(1)
    h.stage.service()
    assert [(f.camera, f.seq) for f in h.sent] == [("a", 1)]
    assert h.counted("a", "error") == 1 and h.counted("a", "ok") == 1
    h.release_outputs(h.sent)
    poll_until(lambda: all_free(h), 30.0, lambda: f"{h.rt.allocator.in_use} slots held")


def test_a_wake_up_after_close_writes_nowhere() -> None:
    """Review finding 8: a backend thread may finish a frame after the stage closed. Its
    wake-up must not raise (EBADF) nor land in a file that reused the pipe's fd number."""
    inflight = InFlight()
    done = inflight.on_done(Running.__new__(Running))
    inflight.close()
    read, write = os.pipe()  # likely the numbers the closed pipe had
    try:
        done()
        os.set_blocking(read, False)
        with pytest.raises(BlockingIOError):
            os.read(read, 1)  # nothing written into the new pipe
    finally:
        os.close(read)
        os.close(write)


def test_a_ring_under_a_new_name_replaces_the_old(harness: Harness) -> None:
    """Review finding 3 (ring half): b's rings under new segment names in a Cameras command
    (a stage that did not see b go, e.g. restarted in between): the shared stage reads the new
    ones, not the old unlinked ones."""
    h = harness
    kept = {k: s for k, s in h.specs.items() if not k.endswith(".b")}
    tag = uuid.uuid4().hex[:6]
    again = {ring_key(kind, "b"): RingSpec(f"edgedtest_{os.getpid()}_{tag}_{kind[0]}b", 4, 64)
             for kind in (FRAMES, TENSORS)}  # fmt: skip
    new_rings: list[SharedRing] = [create_ring(spec) for spec in again.values()]
    try:
        h.rt.use_cameras(Cameras(h.cameras, {**kept, **again}))
        for key, spec in again.items():
            assert h.rt.rings[key].spec.name == spec.name
        new_rings[1].array(0, MODEL.tensor_spec.shape, np.uint8)[...] = 77
        new_rings[1].mark(0, 0)
        h.process(Frame(0, 0.0, 0.0, 4, 4, -1, tensor_slot=0, tensor_layout=MODEL.tensor_tag,
                        camera="b"))  # fmt: skip
        h.stage.drain()
        assert h.output(h.sent[-1]) == 77
    finally:
        for ring in new_rings:
            ring.close()
            ring.unlink()
