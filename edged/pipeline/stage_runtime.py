"""What every stage process shares: sockets, slot allocation and release, counters, shutdown.

Flow control is credit-based: the producer of a ring hands out a slot only when it is free, and
whoever finishes with a frame (or drops it) sends the slot back. In lossless mode a producer
without a free slot waits (back-pressure up to the source); in live mode it drops instead, and
consumers always take the newest frame waiting and skip the older ones. Skips and drops are
counted by the stage where they happen.

Several cameras: capture and preprocess run once per camera (a stage *instance*, see
edged.pipeline.layout) and own that camera's rings (``frames.<camera>``, ``tensors.<camera>``);
the shared stages attach every camera's rings and find a frame's by its ``camera``. The shared
inference stage takes frames from its inbox through a :class:`FairScheduler` (latest frame wins
per camera, round-robin between cameras).
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from edged.config import CameraConfig, EdgedConfig
from edged.log_throttle import LogThrottle
from edged.pipeline.endpoints import Endpoints
from edged.pipeline.handoff import FrameInbox, FrameOutbox, HandoffError
from edged.pipeline.layout import PER_CAMERA, instance_name
from edged.pipeline.messages import (
    CAPTURE,
    INFER,
    PREPROCESS,
    STAGE_ORDER,
    Cameras,
    Command,
    Drain,
    Frame,
    MessageError,
    ModelDescriptor,
    PublishedFrame,
    Reclaim,
    StageEvent,
    Stats,
    Stop,
    decode_command,
    dumps,
    encode,
    loads,
)
from edged.pipeline.ring import RingSpec, SharedRing, attach_ring
from edged.pipeline.scheduler import FairScheduler, latest_wins

log = logging.getLogger(__name__)

FRAMES, TENSORS, OUTPUTS = "frames", "tensors", "outputs"
RING_OWNER = {FRAMES: CAPTURE, TENSORS: PREPROCESS, OUTPUTS: INFER}
PER_CAMERA_RINGS = (FRAMES, TENSORS)  # one per camera; OUTPUTS is shared (owned by infer)
# A release: slot, seq, then the frame's camera id (utf-8). seq counts per camera, so on the
# shared outputs ring only (camera, seq) names one frame.
_RELEASE = struct.Struct("<qq")
MAX_RECORDS_PER_FLUSH = 256  # bounds one stats message at a high frame rate


@dataclass(frozen=True)
class StageSetup:
    """Everything a spawned stage process needs; pickled once at spawn."""

    stage: str
    config: EdgedConfig
    runtime_dir: Path
    rings: dict[str, RingSpec]
    lossless: bool
    model: ModelDescriptor | None = None
    extra: dict = field(default_factory=dict)
    group: tuple[str, ...] = ()  # the stages sharing this process (see edged.pipeline.layout)
    camera: str = ""  # a per-camera stage's camera id ("" : the config's single source)
    tag: str = ""  # the instance's name suffix (see layout.instance_name); "" for plain names
    cameras: tuple[CameraConfig, ...] = ()  # a per-camera stage's own; a shared stage's all

    @property
    def process_group(self) -> tuple[str, ...]:
        return self.group or (self.stage,)

    @property
    def instance(self) -> str:
        """The supervisor identity and inbox name: ``capture[cam1]``, or ``infer``."""
        return instance_name(self.stage, self.tag)


def ring_key(kind: str, camera: str = "") -> str:
    """A ring's name: ``frames.cam1`` for a camera's own rings, ``outputs`` for the shared one
    (and the plain kind for a frame without a camera id)."""
    return f"{kind}.{camera}" if camera and kind in PER_CAMERA_RINGS else kind


class StopRequested(Exception):
    """Raised inside a blocking wait when the stage must exit now."""


class SlotAllocator:
    """Free-slot bookkeeping for the ring this stage produces into."""

    def __init__(self, slots: int, release_socket: zmq.Socket) -> None:
        self._free: deque[int] = deque(range(slots))
        self._in_use: dict[int, tuple[str, int]] = {}  # slot -> its frame's (camera, seq)
        self.socket = release_socket
        self.reclaims = 0  # how many times every slot was taken back

    def collect(self) -> None:
        """Take back every slot released so far (non-blocking)."""
        while True:
            try:
                slot, frame = unpack_release(self.socket.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            # A stale release (slot reclaimed after a restart, then reused) must not free the
            # slot's new occupant (another camera's frame may have the same seq).
            if self._in_use.get(slot) == frame:
                del self._in_use[slot]
                self._free.append(slot)

    def try_acquire(self, seq: int, camera: str = "") -> int | None:
        self.collect()
        if not self._free:
            return None
        slot = self._free.pop()  # the slot freed last: its pages are warm, the rest stay untouched
        self._in_use[slot] = (camera, seq)
        return slot

    def reclaim_slot(self, slot: int) -> None:
        """Return a slot acquired but never handed on."""
        if self._in_use.pop(slot, None) is not None:
            self._free.append(slot)

    def reclaim_all(self, keep: Collection[int] = ()) -> None:
        """Treat every slot as free again (after a consumer restart lost what it held), except
        ``keep``: slots this stage still writes into (frames in flight), not yet handed on."""
        for slot in [s for s in self._in_use if s not in keep]:
            del self._in_use[slot]
            self._free.append(slot)
        self.reclaims += 1

    @property
    def in_use(self) -> int:
        return len(self._in_use)


def pack_release(slot: int, seq: int, camera: str = "") -> bytes:
    return _RELEASE.pack(slot, seq) + camera.encode()


def unpack_release(payload: bytes) -> tuple[int, tuple[str, int]]:
    """(slot, (camera, seq)) of a release message."""
    slot, seq = _RELEASE.unpack_from(payload)
    return slot, (payload[_RELEASE.size :].decode(errors="replace"), seq)


class StageRuntime:
    """Sockets and bookkeeping of one stage. Stage logic lives in the stage modules.

    Stages that share a process (a layout's group) each get a runtime; they share one poller
    and answer each other's supervisor commands while any of them waits (``peers``). A frame
    goes to a neighbour in the same process by a direct call (``local_next``), to the next
    process over its inbox.
    """

    def __init__(
        self,
        setup: StageSetup,
        context: zmq.Context | None = None,
        peers: list[StageRuntime] | None = None,
    ) -> None:
        self.setup = setup
        self.stage = setup.stage
        self.instance = setup.instance
        self.camera = setup.camera
        self.cameras = {c.id: c for c in setup.cameras}
        self.lossless = setup.lossless
        self.endpoints = Endpoints(setup.runtime_dir)
        self.ctx = context or zmq.Context.instance()
        self.rings: dict[str, SharedRing] = {
            name: attach_ring(spec) for name, spec in setup.rings.items()
        }
        self._parent = os.getppid()
        self._stop = False
        self._counters = {"ok": 0, "dropped": 0, "error": 0}
        # The same outcomes per camera (a shared stage serves several; "" : no camera id).
        self._camera_counters: dict[str, dict[str, int]] = {}
        self._frame_camera: str | None = None  # the camera of the frame being processed
        # Told which cameras' rings a reload is about to close or replace, while they are still
        # attached: a stage lets go of those cameras' frames it holds (frames in flight).
        self.cameras_gone: list[Callable[[set[str]], None]] = []
        # Slots of this stage's own ring it still writes into: a Reclaim keeps them.
        self.held_slots: Callable[[], Collection[int]] = lambda: ()
        self._queue_depth = 0
        self._records: list[PublishedFrame] = []  # published frames since the last stats flush
        self.log_throttle = LogThrottle()  # per-frame failures: one line per interval
        self._last_stats = time.monotonic()
        self._stats_interval = setup.config.pipeline.stats_interval_s
        self.command_handler: Callable[[Command], None] = self._unhandled_command
        self.peers: list[StageRuntime] = peers if peers is not None else []
        self.peers.append(self)
        self.local_next: Callable[[Frame], bool] | None = None
        self._stop_requested_by_signal = False

        self.supervisor = self.ctx.socket(zmq.DEALER)
        self.supervisor.setsockopt(zmq.IDENTITY, self.instance.encode())
        self.supervisor.setsockopt(zmq.LINGER, 2000)
        self.supervisor.connect(self.endpoints.supervisor)

        index = STAGE_ORDER.index(self.stage)
        group = setup.process_group
        self.inbox: FrameInbox | None = None
        if index > 0 and STAGE_ORDER[index - 1] not in group:
            self.inbox = FrameInbox(self.endpoints.stage_inbox(self.instance))
        self.outbox: FrameOutbox | None = None
        if index < len(STAGE_ORDER) - 1 and STAGE_ORDER[index + 1] not in group:
            following = STAGE_ORDER[index + 1]  # the same camera's instance, or the shared one
            tag = setup.tag if following in PER_CAMERA else ""
            self.outbox = FrameOutbox(self.endpoints.stage_inbox(instance_name(following, tag)))

        self.allocator: SlotAllocator | None = None
        for kind, owner in RING_OWNER.items():
            own = ring_key(kind, self.camera)
            if owner == self.stage and own in setup.rings:
                sock = self.ctx.socket(zmq.PULL)
                sock.setsockopt(zmq.LINGER, 0)
                sock.bind(self.endpoints.ring_release(own))
                self.allocator = SlotAllocator(setup.rings[own].slots, sock)
        self._release: dict[str, zmq.Socket] = {}
        for ring in setup.rings:
            self._release[ring] = self._release_socket(ring)

        # One poller per process: whichever stage waits also wakes for its peers' commands.
        self.poller = self.peers[0].poller if len(self.peers) > 1 else zmq.Poller()
        self.poller.register(self.supervisor, zmq.POLLIN)
        if self.inbox is not None:
            self.poller.register(self.inbox.fileno(), zmq.POLLIN)  # pyzmq reports raw fds as ints

    def _release_socket(self, ring: str) -> zmq.Socket:
        sock = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(self.endpoints.ring_release(ring))
        return sock

    def ring(self, kind: str, camera: str = "") -> SharedRing:
        """The ring of ``kind`` holding ``camera``'s frames. A camera a reload just added: its
        rings come with a command sent before its processes started, answered here if not
        yet; KeyError for a camera that is gone."""
        key = ring_key(kind, camera)
        if key not in self.rings:
            self.handle_commands()
        try:
            return self.rings[key]
        except KeyError:
            raise KeyError(f"no ring {key}: camera {camera!r} is not configured") from None

    def slot_bytes(self, kind: str) -> int:
        """The slot size of the rings of ``kind`` (every camera's are alike)."""
        return next(r.spec.slot_bytes for k, r in self.rings.items() if k.split(".")[0] == kind)

    def use_cameras(self, command: Cameras) -> None:
        """A reload added or removed cameras: attach the new cameras' rings, let go of the
        removed ones' (their capture stopped first; the supervisor unlinks them after). A ring
        under another segment name (a camera removed, then added again) is replaced."""
        replaced = {k for k, spec in command.rings.items()
                    if k in self.rings and self.rings[k].spec.name != spec.name}  # fmt: skip
        removed = {k for k in self.rings if k not in command.rings}
        gone = {c for c in self.cameras if c not in {new.id for new in command.cameras}}
        gone |= {k.split(".", 1)[1] for k in replaced | removed if "." in k}
        if gone:
            for listener in list(self.cameras_gone):
                listener(gone)
        for key in replaced:
            self.rings.pop(key).close()
            self._release.pop(key).close(0)
        for key in removed:
            self.rings.pop(key).close()
            self._release.pop(key).close(0)
        for key, spec in command.rings.items():
            if key not in self.rings:
                self.rings[key] = attach_ring(spec)
                self._release[key] = self._release_socket(key)
        self.cameras = {c.id: c for c in command.cameras}

    # -- lifecycle -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT ask for a drain; the supervisor decides when a stage really stops.

        Under systemd (KillMode=mixed) and on Ctrl-C the whole group gets the signal; the capture
        stage turns it into end-of-stream so frames in flight still reach subscribers.
        """

        def _request(signum: int, _frame: object) -> None:
            self._stop_requested_by_signal = True

        signal.signal(signal.SIGTERM, _request)
        signal.signal(signal.SIGINT, _request)

    @property
    def signalled(self) -> bool:
        """SIGTERM/SIGINT or a "drain", for any stage of the process: they share one loop."""
        return any(rt._stop_requested_by_signal for rt in self.peers)

    @property
    def stopping(self) -> bool:
        """A stop for any stage of the process stops them all (they share one loop)."""
        return any(rt._stop for rt in self.peers)

    def request_stop(self) -> None:
        self._stop = True

    def parent_alive(self) -> bool:
        return os.getppid() == self._parent

    def close(self) -> None:
        self.flush_stats()
        for ring in self.rings.values():
            ring.close()
        sockets = [self.supervisor, *self._release.values()]
        if self.allocator is not None:
            sockets.append(self.allocator.socket)
        for sock in sockets:
            sock.close()
        for box in (self.inbox, self.outbox):
            if box is not None:
                box.close()

    # -- supervisor channel --------------------------------------------------------------------

    def send_event(self, event: StageEvent) -> None:
        try:
            self.supervisor.send(encode(event), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("supervisor channel full; %s event dropped", type(event).__name__)

    def _unhandled_command(self, command: Command) -> None:
        # A stage that takes this command never installed its handler: say so, loudly.
        log.error("%s stage has no handler for %s; ignored", self.instance, command)

    def _runtime_command(self, command: Command) -> bool:
        """The commands every stage answers the same way; False for the stage's own."""
        match command:
            case Stop():
                self.request_stop()
            case Drain():  # like SIGTERM
                self._stop_requested_by_signal = True
            case Cameras():
                self.use_cameras(command)
            case Reclaim():
                if self.allocator is not None:
                    keep = set(self.held_slots())
                    stranded = self.allocator.in_use - len(keep)
                    self.allocator.reclaim_all(keep=keep)
                    log.info("reclaimed %d slot(s) after a stage restart (%d still written)",
                             stranded, len(keep))  # fmt: skip
            case _:
                return False
        return True

    def handle_commands(self) -> None:
        """Answer the supervisor, for every stage of this process."""
        for rt in self.peers:
            rt._handle_own_commands()

    def _handle_own_commands(self) -> None:
        while True:
            try:
                payload = self.supervisor.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                command = decode_command(payload)
            except MessageError as exc:
                log.error("%s stage: command refused: %s", self.instance, exc)
                continue
            if not self._runtime_command(command):
                self.command_handler(command)

    # -- counters ------------------------------------------------------------------------------

    def count(self, outcome: str, n: int = 1, camera: str | None = None) -> None:
        """Count ``n`` frames with ``outcome`` for ``camera`` (default: the camera of the frame
        being processed, else this instance's own)."""
        self._counters[outcome] += n
        if camera is None:
            camera = self._frame_camera if self._frame_camera is not None else self.camera
        counts = self._camera_counters.setdefault(camera, {})
        counts[outcome] = counts.get(outcome, 0) + n

    def record(self, frame: PublishedFrame) -> None:
        """Report a published frame. Records travel with the next counters flush: one message
        (and one supervisor wake-up) per ``stats_interval_s`` instead of one per frame, and
        frame counts and latency histograms move together."""
        self._records.append(frame)
        if len(self._records) >= MAX_RECORDS_PER_FLUSH:
            self.flush_stats()

    def set_queue_depth(self, depth: int) -> None:
        self._queue_depth = depth

    def maybe_flush_stats(self) -> None:
        now = time.monotonic()
        for rt in self.peers:
            if now - rt._last_stats >= rt._stats_interval:
                rt.flush_stats()

    def flush_stats(self) -> None:
        self._last_stats = time.monotonic()
        self.send_event(Stats(dict(self._counters), self._queue_depth, tuple(self._records),
                              self._camera_counters))  # fmt: skip
        self._records = []
        self._camera_counters = {}
        for key in self._counters:
            self._counters[key] = 0

    # -- frames --------------------------------------------------------------------------------

    def send_frame(self, frame: Frame) -> bool:
        """Hand ``frame`` to the next stage; if it cannot be (the next stage is down, or this
        one must stop), the frame is dropped here and its slots freed. True when delivered."""
        if self.local_next is not None:
            return self.local_next(frame)
        assert self.outbox is not None
        patient = self.lossless or frame.end_of_stream
        reclaims = self.allocator.reclaims if self.allocator else 0
        try:
            if self.outbox.send(dumps(frame), lambda: self._must_stop_sending(reclaims), patient):
                return True
            if (more := self.log_throttle.allow("handoff")) is not None:
                log.warning("%s: next stage unavailable; frame %d dropped%s", self.stage,
                            frame.seq, more)  # fmt: skip
        except (HandoffError, OSError) as exc:
            if (more := self.log_throttle.allow("handoff-error")) is not None:
                log.error("%s: frame %d cannot be handed on: %s%s", self.stage, frame.seq, exc,
                          more)  # fmt: skip
        self.drop(frame)  # frees the slots it holds, this stage's own included
        return False

    def _must_stop_sending(self, reclaims_at_send: int) -> bool:
        """Checked while a send waits: commands still get answered (stop, drain, reclaim) and
        counters still reach the supervisor. A reclaim meanwhile took back the slot the waiting
        frame holds (the next frame could overwrite it under the reader): give the frame up."""
        self.handle_commands()
        self.maybe_flush_stats()
        reclaimed = self.allocator is not None and self.allocator.reclaims != reclaims_at_send
        return self.stopping or reclaimed or not self.parent_alive()

    def release(self, frame: Frame, *rings: str) -> None:
        """Give back the slots ``frame`` holds in ``rings`` (all of them when none named)."""
        held = {FRAMES: frame.frame_slot, TENSORS: frame.tensor_slot, OUTPUTS: frame.output_slot}
        for kind in rings or tuple(held):
            slot = held[kind]
            sock = self._release.get(ring_key(kind, frame.camera))
            if slot >= 0 and sock is not None:  # None: a camera removed meanwhile
                sock.send(pack_release(slot, frame.seq, frame.camera))

    def drop(self, frame: Frame, outcome: str = "dropped") -> None:
        """A frame that goes no further: count it here and free everything it holds."""
        self.count(outcome, camera=frame.camera or self.camera)
        self.release(frame)

    def poll(self, timeout_ms: int) -> list[Frame]:
        """Wait for frames (handling commands meanwhile); returns all frames waiting, in order."""
        events = dict(self.poller.poll(timeout_ms))
        if any(rt.supervisor in events for rt in self.peers):
            self.handle_commands()
        frames: list[Frame] = []
        if self.inbox is not None and self.inbox.fileno() in events:
            frames = [loads(m) for m in self.inbox.receive_all()]  # type: ignore[misc]
        self.set_queue_depth(len(frames))
        self.maybe_flush_stats()
        if not self.parent_alive():
            log.error("supervisor is gone; %s stage exits", self.instance)
            self.request_stop()
        return frames

    def select_frames(self, frames: list[Frame]) -> list[Frame]:
        """Lossless: all of them. Live: only the newest frame and every end-of-stream marker,
        in arrival order (:func:`latest_wins`, the shared stage's rule per camera too); the
        older frames are dropped. Only per-camera stages skip this way: one camera's frames."""
        if self.lossless:
            return frames
        kept, stale = latest_wins(frames)
        for frame in stale:
            self.drop(frame)
        return kept

    def acquire_slot(self, seq: int, block: bool, camera: str | None = None) -> int | None:
        """A free slot of this stage's own ring for frame ``seq`` of ``camera`` (default: this
        instance's); waits for one only when ``block``."""
        assert self.allocator is not None
        camera = self.camera if camera is None else camera
        while True:
            slot = self.allocator.try_acquire(seq, camera)
            if slot is not None or not block:
                return slot
            if self.allocator.socket.poll(100):
                continue
            self.handle_commands()
            self.maybe_flush_stats()
            if self.stopping or not self.parent_alive():
                raise StopRequested

    def slot_for(self, frame: Frame) -> int | None:
        """A slot of this stage's ring for ``frame``, or ``None`` when there is nothing to do:
        end-of-stream markers are forwarded, and a frame with no slot (live mode) is dropped."""
        if frame.end_of_stream:
            self.send_frame(frame)
            return None
        slot = self.acquire_slot(frame.seq, block=self.lossless, camera=frame.camera)
        if slot is None:
            self.drop(frame)
        return slot

    def process_one(self, process: Callable[[Frame], None], frame: Frame) -> None:
        """Run this stage's ``process`` on one frame; a failure is logged, counted as an error
        and frees the frame's slots (the stage carries on with the next one)."""
        if frame.camera and self.cameras and frame.camera not in self.cameras:
            self.handle_commands()  # a camera a reload just added: its Cameras command
            if frame.camera not in self.cameras:
                self.drop(frame)  # a camera a reload removed: its frames still in flight go
                return
        self._frame_camera = frame.camera or self.camera
        try:
            process(frame)
        except StopRequested:
            raise
        except Exception:
            if (more := self.log_throttle.allow("process")) is not None:
                log.exception("%s failed for frame %d%s", self.instance, frame.seq, more)
            self.drop(frame, "error")
        finally:
            self._frame_camera = None

    def serve(
        self,
        process: Callable[[Frame], None],
        *,
        latest_only: bool,
        after_frames: Callable[[], None] | None = None,
        timeout_ms: Callable[[], int] = lambda: 200,
    ) -> None:
        """The stage loop: wait for frames, (skip to the newest), process each until stopped.

        A frame whose processing fails is logged, counted as an error and its slots freed;
        the stage carries on with the next one.
        """
        try:
            while not self.stopping:
                frames = self.poll(timeout_ms())
                for frame in self.select_frames(frames) if latest_only else frames:
                    self.process_one(process, frame)
                if after_frames is not None:
                    after_frames()
        except StopRequested:
            pass

    def serve_fair(
        self,
        process: Callable[[Frame], None],
        *,
        after_frames: Callable[[], None] | None = None,
        timeout_ms: Callable[[], int] = lambda: 200,
    ) -> None:
        """The shared stage's loop over every camera's frames: one frame at a time from a
        :class:`FairScheduler`, looking at the inbox again after each (live mode: the newest
        frame of each camera is what runs next; the older one is dropped here and counted for
        its camera). Lossless: every frame, in order per camera."""
        scheduler: FairScheduler[Frame] = FairScheduler(self.lossless)

        def forget(cameras: set[str]) -> None:  # their frames waiting go (rings still attached)
            for camera in cameras:
                for frame in scheduler.forget(camera):
                    self.drop(frame)

        self.cameras_gone.append(forget)
        try:
            while not self.stopping:
                wait = 0 if scheduler else timeout_ms()
                for frame in self.poll(wait):
                    for stale in scheduler.add(frame):
                        self.drop(stale)
                frame = scheduler.next()
                if frame is not None:
                    self.process_one(process, frame)
                    self.set_queue_depth(len(scheduler))
                if after_frames is not None:
                    after_frames()
        except StopRequested:
            pass
        finally:
            self.cameras_gone.remove(forget)


def link_local(upstream: StageRuntime, downstream: StageRuntime,
               process: Callable[[Frame], None]) -> None:  # fmt: skip
    """Frames ``upstream`` sends go straight into ``process``, the next stage in this process.

    A frame the next stage fails on is counted as its error and its slots freed
    (:meth:`StageRuntime.process_one`); the sender still counts it as handed on.
    """

    def deliver(frame: Frame) -> bool:
        downstream.process_one(process, frame)
        return True

    upstream.local_next = deliver
