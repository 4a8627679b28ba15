"""Inference: run the active model on each tensor; load and switch variants without stopping.

A swap loads and warms up the new variant on a background thread while the old one keeps
serving; the switch happens between two frames, and only if everything succeeded. Each frame
leaves with the descriptor of the model that produced it, so postprocess decodes it right.

A backend that runs several frames at once (OpenVINO with ``requests: 2``) gets up to that many
submitted (each into its own output slot); they are handed on in order as they finish, and all
of them are finished before a switch, an end-of-stream marker or a reload. Other backends run
one frame at a time through the same path (submitted and finished at once).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import zmq

from edged.backends import Backend, BackendBroken, BackendError, requests_in_flight
from edged.heap import release_free_heap
from edged.model_files import BadModelFile
from edged.models import ResolvedVariant
from edged.pipeline.messages import (
    INFER,
    SWAP_TIMEOUT_S,
    ArrayRef,
    Command,
    Fatal,
    Frame,
    InferenceReady,
    ModelDescriptor,
    ModelReloaded,
    Swap,
    SwapDone,
    SwapFailed,
)
from edged.pipeline.model_loader import load_model
from edged.pipeline.ring import aligned
from edged.pipeline.stage_runtime import (
    FRAMES,
    OUTPUTS,
    TENSORS,
    StageRuntime,
    StopRequested,
    ring_key,
)
from edged.pipeline.stages.inflight import InFlight, Running
from edged.pipeline.stages.recovery import ReloadPolicy
from edged.preprocess import TensorWriter

log = logging.getLogger(__name__)


class PendingSwap:
    """A variant being loaded on a background thread: a swap the supervisor asked for, or
    (``request_id`` None) the active model loaded again after its backend broke."""

    def __init__(self, request_id: str | None, resolved: ResolvedVariant) -> None:
        self.request_id = request_id
        self.resolved = resolved
        self.started = time.monotonic()
        self.done = threading.Event()
        self.backend: Backend | None = None
        self.model: ModelDescriptor | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._abandoned = False

    @property
    def is_reload(self) -> bool:
        """The active model loaded again (no swap, no supervisor waiting for it)."""
        return self.request_id is None

    def overdue(self, now: float) -> bool:
        return now - self.started > SWAP_TIMEOUT_S

    def abandon(self) -> None:
        """Nobody will adopt this load: close what it loaded, now or when it finishes."""
        with self._lock:
            self._abandoned = True
            finished = self.done.is_set()
        if finished:
            self.close_loaded()

    def finish(self) -> None:
        """The loading thread is done (loaded or failed)."""
        with self._lock:
            self.done.set()
            abandoned = self._abandoned
        if abandoned:
            self.close_loaded()

    def close_loaded(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.close()


class InferenceStage:
    last_camera = ""  # the camera of frame ``last_seq`` (seqs count per camera)

    def __init__(self, rt: StageRuntime, resolved: ResolvedVariant) -> None:
        self.rt = rt
        self.config = rt.setup.config
        self.outputs = rt.rings[OUTPUTS]
        self.generation = 0
        self.limits = (rt.slot_bytes(TENSORS), self.outputs.spec.slot_bytes)
        self.backend, self.model = load_model(
            resolved,
            self.config.inference,
            self.config.model.warmup_runs,
            self.generation,
            self.limits,
            in_flight=True,
        )
        self.resolved = resolved
        self.pending: PendingSwap | None = None
        self.broken = False  # the backend can run no more frames (until a reload or swap)
        self.recovery = ReloadPolicy()
        self.last_seq = -1
        self.inflight = InFlight()
        self.use_capacity()
        rt.poller.register(self.inflight.fileno(), zmq.POLLIN)  # a finished frame wakes the loop
        rt.command_handler = self.on_command
        rt.cameras_gone.append(self.on_cameras_gone)
        rt.held_slots = lambda: [running.slot for running in self.inflight]
        release_free_heap()

    def use_capacity(self) -> None:
        """What the serving backend runs at once; logged (and asserted by the tests: a backend
        that silently ran one frame at a time would only be slower)."""
        self.capacity = self.frames_in_flight()
        log.info("%s: %d frame(s) in flight", self.model.key, self.capacity)

    def frames_in_flight(self) -> int:
        """What the backend runs at once, within the output ring (each frame holds a slot)."""
        wanted = requests_in_flight(self.backend)
        return 1 if wanted == 1 else min(wanted, self.outputs.spec.slots)

    # -- swaps ---------------------------------------------------------------------------------

    def on_command(self, command: Command) -> None:
        match command:
            case Swap():
                self.swap(command)
            case _:
                log.error("inference stage: unexpected command %s; ignored", command)

    def swap(self, command: Swap) -> None:
        request_id = command.request_id
        if self.pending is not None and self.pending.overdue(time.monotonic()):
            # A load stuck (in a driver) past the supervisor's swap timeout: abandon it, so
            # it does not block every later swap; whatever it loads in the end is closed.
            stuck_s = time.monotonic() - self.pending.started
            log.error("abandoning the load of %s, started %.0f s ago", self.pending.resolved.path,
                      stuck_s)  # fmt: skip
            self.pending.abandon()
            self.pending = None
        if self.pending is not None:
            busy = "another swap is in progress"
            if self.pending.is_reload:
                busy = "the model is being loaded again after a backend failure; retry shortly"
            self.rt.send_event(SwapFailed(request_id, busy))
            return
        pending = PendingSwap(request_id, command.resolved)
        self.pending = pending
        threading.Thread(target=self._load, args=(pending,), daemon=True).start()

    def _load(self, pending: PendingSwap) -> None:
        # A reload keeps the generation: the same model, so the same key downstream.
        generation = self.generation if pending.is_reload else self.generation + 1
        try:
            pending.backend, pending.model = load_model(
                pending.resolved, self.config.inference, self.config.model.warmup_runs,
                generation, self.limits, in_flight=True,
            )  # fmt: skip
        except BackendError as exc:
            pending.error = str(exc)
        except Exception as exc:  # never let a bad file kill the serving process
            log.exception("unexpected error loading %s", pending.resolved.path)
            pending.error = f"{type(exc).__name__}: {exc}"
        pending.finish()

    def maybe_switch(self) -> None:
        """Between frames: adopt a finished swap (or report its failure)."""
        pending = self.pending
        if pending is None or not pending.done.is_set():
            return
        self.drain()  # the frames in flight are the old model's: they leave first, in order
        self.pending = None
        duration = time.monotonic() - pending.started
        if pending.is_reload:
            self._adopt_reload(pending, duration)
            return
        if pending.error is not None or pending.backend is None or pending.model is None:
            log.warning("swap to %s refused: %s", pending.resolved.variant, pending.error)
            assert pending.request_id is not None
            self.rt.send_event(SwapFailed(pending.request_id, pending.error or "failed"))
            return
        old = self.backend
        self.backend, self.model = pending.backend, pending.model
        self.resolved = pending.resolved
        self.generation += 1
        self.broken = False  # a swap away from a broken backend is a way out too
        self.recovery.succeeded()
        self.use_capacity()
        old.close()
        release_free_heap()  # the old session's memory, and the new one's loading peak
        log.info("now serving %s (loaded in %.2fs)", self.model.key, duration)
        assert pending.request_id is not None
        self.rt.send_event(SwapDone(pending.request_id, self.model, self.resolved, duration,
                                    last_old_seq=self.last_seq,
                                    last_old_camera=self.last_camera))  # fmt: skip

    # -- recovery from a broken backend ----------------------------------------------------------

    def on_broken(self, reason: str) -> None:
        """The backend can run no more frames: close it (which also lets go of its device, so
        the next load opens it afresh) and load the same model again in the background."""
        log.error("%s: the backend failed (%s); loading the model again", self.model.key, reason)
        self.broken = True
        self.abandon_inflight()
        self.backend.close()
        self.start_reload()

    def start_reload(self) -> None:
        if self.pending is not None or not self.recovery.due(time.monotonic()):
            return
        self.pending = PendingSwap(None, self.resolved)
        threading.Thread(target=self._load, args=(self.pending,), daemon=True).start()

    def _adopt_reload(self, pending: PendingSwap, duration: float) -> None:
        ok = pending.error is None and pending.backend is not None and pending.model is not None
        self.rt.flush_stats()  # the frames it cost are counted before the reload is reported
        self.rt.send_event(ModelReloaded(ok, pending.error, duration))
        if not ok:
            delay = self.recovery.failed(time.monotonic())
            if delay is None:  # service() gives the process up
                log.error("%s (last: %s)", self._given_up(), pending.error)
                return
            log.error("loading %s again failed: %s; next attempt in %.0f s", self.model.key,
                      pending.error, delay)  # fmt: skip
            return
        assert pending.backend is not None and pending.model is not None
        self.backend, self.model = pending.backend, pending.model
        self.broken = False
        self.recovery.succeeded()
        self.use_capacity()
        log.info("%s loaded again in %.2fs; serving", self.model.key, duration)

    def _given_up(self) -> str:
        return f"{self.model.key} failed to load again {self.recovery.failures} times in a row"

    # -- frames --------------------------------------------------------------------------------

    def input_tensor(self, frame: Frame) -> tuple[np.ndarray, Frame]:
        """The tensor preprocess made, or a fresh one if it was made for the previous model."""
        model = self.model
        if frame.tensor_layout == model.tensor_tag:
            spec = model.tensor_spec
            tensors = self.rt.ring(TENSORS, frame.camera)  # the frame's camera's ring
            return tensors.array(frame.tensor_slot, spec.shape, spec.dtype), frame
        # Frames in flight across a swap to a model with another input format.
        frames = self.rt.ring(FRAMES, frame.camera)
        image = frames.array(frame.frame_slot, (frame.height, frame.width, 3), np.uint8)
        tensor = np.empty(model.tensor_spec.shape, model.input_dtype)
        box = TensorWriter(model.input_layout).write(image, tensor)  # one-off: no padding kept
        return tensor, replace(frame, letterbox=box, tensor_layout=model.tensor_tag)

    def store_outputs(self, results: list[np.ndarray], slot: int) -> tuple[ArrayRef, ...]:
        refs = []
        offset = 0
        for array in results:
            array = np.ascontiguousarray(array, dtype=np.float32)
            self.outputs.array(slot, array.shape, np.float32, offset)[...] = array
            refs.append(ArrayRef(offset, tuple(array.shape), "float32"))
            offset += aligned(array.nbytes)
        return tuple(refs)

    def slot_views(self, backend: Backend, slot: int) -> tuple[tuple[ArrayRef, ...], list]:
        """Where a backend with static output shapes writes its outputs in ``slot``."""
        refs, offset = [], 0
        for shape in backend.output_shapes:
            refs.append(ArrayRef(offset, tuple(shape), "float32"))
            offset += aligned(int(np.prod(shape)) * 4)
        views = [self.outputs.array(slot, r.shape, np.float32, r.offset) for r in refs]
        return tuple(refs), views

    def run_into_slot(self, tensor: np.ndarray, slot: int) -> tuple[ArrayRef, ...]:
        """Infer with outputs written straight into the slot when the backend can."""
        backend = self.backend
        if getattr(backend, "static_outputs", False) and hasattr(backend, "infer_into"):
            refs, views = self.slot_views(backend, slot)
            backend.infer_into(tensor, views)
            return refs
        return self.store_outputs(backend.infer(tensor), slot)

    def process(self, frame: Frame) -> None:
        self.publish_finished()
        if frame.end_of_stream:
            self.drain()  # the marker must not overtake the frames in flight
        self.maybe_switch()
        while len(self.inflight) >= self.capacity:
            self.finish_oldest()
        slot = self.output_slot(frame)
        if slot is None:
            return
        if self.broken:  # no model to run until the reload (service() starts it) finishes
            self.rt.allocator.reclaim_slot(slot)
            self.rt.drop(frame, "error")
            return
        model, backend = self.model, self.backend
        try:
            tensor, frame = self.input_tensor(frame)
            running = self.start(backend, model, tensor, frame, slot)
        except Exception as exc:
            self.failed(frame, slot, model, exc)
            return
        self.inflight.add(running)
        self.publish_finished()

    def output_slot(self, frame: Frame) -> int | None:
        """A slot for the frame's outputs. Frames in flight hold slots too: while none is free,
        they are finished and handed on first, before waiting (lossless) or dropping (live)."""
        if not frame.end_of_stream:
            while len(self.inflight):
                slot = self.rt.acquire_slot(frame.seq, block=False, camera=frame.camera)
                if slot is not None:
                    return slot
                self.finish_oldest()
        return self.rt.slot_for(frame)

    def start(self, backend: Backend, model: ModelDescriptor, tensor: np.ndarray, frame: Frame,
              slot: int) -> Running:  # fmt: skip
        """Submit the frame (several in flight), or run it now (one at a time)."""
        started = time.monotonic()
        if self.capacity == 1:
            refs = self.run_into_slot(tensor, slot)
            return Running(frame, slot, model, backend, refs, started, finished=time.monotonic())
        refs, views = self.slot_views(backend, slot)
        running = Running(frame, slot, model, backend, refs, started, buffers=[tensor, *views])
        running.handle = backend.submit(tensor, views, self.inflight.on_done(running))  # type: ignore[attr-defined]
        return running

    def publish_finished(self) -> None:
        """Hand on the oldest frames in flight that have finished (never one out of order)."""
        self.inflight.clear_wakeups()
        while self.inflight.head_finished():
            self.finish_oldest()

    def drain(self) -> None:
        """Finish and hand on every frame in flight (waiting for them)."""
        while len(self.inflight):
            self.finish_oldest()

    def finish_oldest(self) -> None:
        running = self.inflight.pop()
        if running.handle is not None:
            try:
                running.backend.wait(running.handle)  # type: ignore[attr-defined]
            except Exception as exc:
                self.failed(running.frame, running.slot, running.model, exc)
                return
            if running.finished is None:  # waited before the backend's callback ran
                running.finished = time.monotonic()
        running.buffers.clear()  # the backend is done with them: no view pins a ring
        try:
            self.publish(running)
        except StopRequested:
            raise
        except Exception:  # one frame's failure (from service() too) never stops the stage
            if (more := self.rt.log_throttle.allow("publish")) is not None:
                log.exception("inference: frame %d of %r not handed on%s", running.frame.seq,
                              running.frame.camera, more)  # fmt: skip
            self.rt.allocator.reclaim_slot(running.slot)
            self.rt.drop(running.frame, "error")

    def on_cameras_gone(self, cameras: set[str]) -> None:
        """A reload is about to close (or replace) these cameras' rings: their frames in flight
        are waited for (the backend reads their tensors) and dropped, their slots taken back."""
        for running in self.inflight.take(cameras):
            self.abandon(running, "dropped")

    def publish(self, running: Running) -> None:
        frame, slot = running.frame, running.slot
        tensors = self.rt.rings.get(ring_key(TENSORS, frame.camera))
        if tensors is None:  # its camera is gone (a reload removed it)
            self.rt.allocator.reclaim_slot(slot)
            self.rt.drop(frame)
            return
        if frame.tensor_slot >= 0 and not tensors.holds(frame.tensor_slot, frame.seq):
            # A restarted preprocess reused the tensor slot under us (its new allocator counts
            # every slot free): these outputs may be another frame's. Discard.
            log.warning("tensor of frame %d was overwritten; frame dropped", frame.seq)
            self.rt.allocator.reclaim_slot(slot)
            self.rt.drop(frame, "error")
            return
        self.outputs.mark(slot, frame.seq)
        self.last_seq, self.last_camera = frame.seq, frame.camera
        assert running.finished is not None
        sent = self.rt.send_frame(
            replace(
                frame,
                tensor_slot=-1,
                model=running.model,
                output_slot=slot,
                outputs=running.refs,
                timings=frame.timed(INFER, running.started, running.finished),
            )
        )
        self.rt.release(frame, TENSORS)  # after the frame is on its way: off its critical path
        if sent:
            # Named: a frame in flight may finish while another frame (or none) is the one
            # being processed, so the runtime's "current camera" is not this frame's.
            self.rt.count("ok", camera=frame.camera or self.rt.camera)

    def failed(self, frame: Frame, slot: int, model: ModelDescriptor, exc: Exception) -> None:
        self.rt.allocator.reclaim_slot(slot)
        self.rt.drop(frame, "error")
        if isinstance(exc, BackendBroken):
            self.on_broken(str(exc))  # which says so, once
        elif (more := self.rt.log_throttle.allow("inference")) is not None:
            log.error("inference failed on frame %d with %s: %s%s", frame.seq, model.key,
                      exc, more)  # fmt: skip

    def abandon_inflight(self, outcome: str = "error") -> None:
        """Drop the frames in flight, once the backend is done with their memory."""
        while len(self.inflight):
            self.abandon(self.inflight.pop(), outcome)

    def abandon(self, running: Running, outcome: str) -> None:
        """Drop a frame taken out of flight, once the backend is done with its memory."""
        if running.handle is not None:
            with contextlib.suppress(Exception):  # dropped either way
                running.backend.wait(running.handle)  # type: ignore[attr-defined]
        running.buffers.clear()  # no view left on its camera's rings
        self.rt.allocator.reclaim_slot(running.slot)
        self.rt.drop(running.frame, outcome)

    def service(self) -> None:
        """Every loop turn, frames or not: switch to a model that finished loading; give the
        process up when a broken model would not load again (the supervisor restarts it)."""
        self.publish_finished()
        self.maybe_switch()
        pending = self.pending
        if pending and pending.is_reload and self.recovery.hung(pending.started, time.monotonic()):
            pending.abandon()  # whatever it loads in the end is closed, not adopted
            raise BackendBroken(f"loading {self.resolved.path} again hung for "
                                f"{self.recovery.hung_s:.0f} s; restarting the inference "
                                "process")  # fmt: skip
        if self.broken:
            self.start_reload()  # when its pause is over, frames or not
        if self.recovery.exhausted:
            raise BackendBroken(f"{self._given_up()}; restarting the inference process")

    def serve(self, after_frames: Callable[[], None] | None = None) -> None:
        # Poll faster while a swap loads, so the switch happens soon after it is ready.
        self.rt.serve_fair(self.process, after_frames=after_frames,
                           timeout_ms=lambda: 50 if self.pending else 200)  # fmt: skip

    def close(self) -> None:
        self.rt.cameras_gone.remove(self.on_cameras_gone)
        self.abandon_inflight("dropped")
        self.backend.close()
        self.inflight.close()


def open_stage(rt: StageRuntime) -> InferenceStage | None:
    resolved: ResolvedVariant = rt.setup.extra["resolved"]
    try:
        stage = InferenceStage(rt, resolved)
    except BackendError as exc:
        log.error("cannot load %s: %s", resolved.path, exc)
        rt.send_event(Fatal(str(exc), bad_model=isinstance(exc, BadModelFile)))
        return None
    rt.send_event(InferenceReady(stage.model))
    return stage
