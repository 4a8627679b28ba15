"""The capture stage against scripted sources: stalls, hangs, backoff, bad frames, stop.

The stage runs for real (its StageRuntime, ZeroMQ ipc sockets and a shared-memory frame ring)
on a thread of the test process; the test plays the supervisor (ROUTER) and the preprocess stage
(PULL, slot releases). Sources are scripted so that every failure mode is deterministic.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from edged.config import EdgedConfig
from edged.pipeline.endpoints import Endpoints
from edged.pipeline.handoff import FrameInbox
from edged.pipeline.messages import (
    Command,
    Drain,
    Fatal,
    Frame,
    Reclaim,
    SourceConnected,
    SourceLost,
    StageEvent,
    Stats,
    Stop,
    decode_event,
    encode,
    loads,
)
from edged.pipeline.ring import RingSpec, create_ring
from edged.pipeline.stage_runtime import FRAMES, StageRuntime, StageSetup, StopRequested
from edged.pipeline.stages import capture
from edged.sources import SourceError, SourceInfo
from tests.daemon import poll_until

W, H = 64, 48


class ScriptedSource:
    """A source whose reads follow a script of actions.

    ``frame`` delivers an image, ``fail`` raises SourceError, ``eof`` returns None (end of a
    file), ``crash`` raises a non-source error, ``block`` waits for :attr:`unblock` and then
    delivers, ``shape:<h>x<w>x<c>`` delivers an image of that shape. An exhausted script repeats
    ``frame``.
    """

    def __init__(self, script: list[str] | None = None, live: bool = True, size=(W, H)) -> None:
        self.script = list(script or [])
        self.info = SourceInfo("stream" if live else "file", "fake://", size[0], size[1], 200.0,
                               live=live)  # fmt: skip
        self.unblock = threading.Event()
        self.reading = False
        self.closed = False
        self.closed_during_read = False
        self.reads = 0
        self.returned_at = 0.0  # time.monotonic() when the latest read returned

    def read(self) -> Any:
        assert not self.closed, "read after close"
        self.reading = True
        try:
            self.reads += 1
            action = self.script.pop(0) if self.script else "frame"
            if action == "fail":
                raise SourceError("scripted failure")
            if action == "crash":
                raise ZeroDivisionError("scripted bug")
            if action == "eof":
                return None
            if action == "block":
                self.unblock.wait()
            if action.startswith("shape:"):
                dims = tuple(int(x) for x in action[6:].split("x"))
                return np.zeros(dims, np.uint8)
            if action == "float":
                return np.zeros((H, W, 3), np.float32)
            if action == "none-array":
                return [[1, 2, 3]]
            return np.full((H, W, 3), self.reads % 256, np.uint8)
        finally:
            self.returned_at = time.monotonic()
            self.reading = False

    def close(self) -> None:
        if self.reading:
            self.closed_during_read = True
        self.closed = True


class DecodingSource(ScriptedSource):
    """A file-like source that can decode into a caller's array, as OpenCVSource.read_into."""

    def __init__(self, script: list[str] | None = None) -> None:
        super().__init__(script, live=False)
        self.in_place = 0

    def read_into(self, out: np.ndarray | None) -> Any:
        image = self.read()
        if out is not None and isinstance(image, np.ndarray) and image.shape == out.shape \
                and image.dtype == out.dtype:  # fmt: skip
            out[...] = image
            self.in_place += 1
            return out
        return image


class Opener:
    """Replaces capture.open_source: hands out scripted sources, or raises for ``None``."""

    def __init__(self, sources: list[ScriptedSource | None]) -> None:
        self.sources = list(sources)
        self.opened: list[ScriptedSource] = []
        self.attempts = 0

    def __call__(self, cfg: Any) -> ScriptedSource:
        self.attempts += 1
        nxt = self.sources.pop(0) if self.sources else ScriptedSource()
        if nxt is None:
            raise SourceError("scripted: cannot open")
        self.opened.append(nxt)
        return nxt


class Harness:
    """Runs a CaptureStage on a thread; plays supervisor and downstream for it."""

    def __init__(self, tmp_path: Path, source: dict | None = None, lossless: bool = False,
                 **pipeline: Any) -> None:  # fmt: skip
        runtime_dir = tmp_path / "run"
        runtime_dir.mkdir(parents=True)
        self.config = EdgedConfig.model_validate({
            "source": {"uri": "tcp://fake", "reconnect": {
                "initial_backoff_s": 0.05, "max_backoff_s": 0.2, "stall_timeout_s": 0.5,
            }, **(source or {})},
            "pipeline": {"max_frame_width": W, "max_frame_height": H, "ring_slots": 4,
                         "stats_interval_s": 0.05, **pipeline},
        })  # fmt: skip
        spec = RingSpec(f"edgedtest_{os.getpid()}_{uuid.uuid4().hex[:6]}", 4, W * H * 3)
        self.ring = create_ring(spec)
        self.setup = StageSetup("capture", self.config, runtime_dir, {FRAMES: spec}, lossless)
        endpoints = Endpoints(runtime_dir)
        ctx = zmq.Context.instance()
        self.events_sock = ctx.socket(zmq.ROUTER)
        self.events_sock.setsockopt(zmq.LINGER, 0)
        # As the supervisor's: a command for a stage not connected yet fails instead of
        # vanishing (see command()).
        self.events_sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.events_sock.bind(endpoints.supervisor)
        self.inbox = FrameInbox(endpoints.stage_inbox("preprocess"))
        self.release_sock = ctx.socket(zmq.PUSH)
        self.release_sock.setsockopt(zmq.LINGER, 0)
        self.release_sock.connect(endpoints.ring_release(FRAMES))
        self.events: list[StageEvent] = []
        self.frames: list[Frame] = []
        self.stage: capture.CaptureStage | None = None
        self.error: BaseException | None = None
        self.auto_release = True  # give frame slots back at once, like a fast preprocess
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rt = StageRuntime(self.setup)
        self.stage = capture.CaptureStage(rt, self.config.source)
        try:
            self.stage.serve()
        except StopRequested:
            pass
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
        finally:
            self.stage.close()
            rt.close()

    def start(self) -> Harness:
        self.thread.start()
        return self

    def pump(self) -> None:
        """Collect events and frames so far; give frame slots back unless told not to."""
        while self.events_sock.poll(0):
            _identity, payload = self.events_sock.recv_multipart()
            self.events.append(decode_event(payload))
        for payload in self.inbox.receive_all():
            frame = loads(payload)
            self.frames.append(frame)
            if self.auto_release and frame.frame_slot >= 0:
                self.release_sock.send(struct.pack("<qq", frame.frame_slot, frame.seq))

    def wait(self, check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
        """Pump until ``check()`` holds; the deadline only bounds a hang."""

        def step() -> Any:
            self.pump()
            if self.error is not None:
                raise self.error
            return check()

        return poll_until(step, timeout, lambda: f"{what}; events: {self.summary()}", 0.01)

    def source_events(self) -> list[SourceConnected | SourceLost]:
        return [e for e in self.events if isinstance(e, SourceConnected | SourceLost)]

    def counts(self) -> dict[str, int]:
        total = {"ok": 0, "dropped": 0, "error": 0}
        for e in self.events:
            if isinstance(e, Stats):
                for k, v in e.counts.items():
                    total[k] += v
        return total

    def summary(self) -> str:
        return f"{self.source_events()} counts={self.counts()} frames={len(self.frames)}"

    def _try_send(self, command: Command) -> bool:
        try:
            self.events_sock.send_multipart((b"capture", encode(command)), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            return False
        return True

    def command(self, command: Command) -> None:
        """Send ``command`` to the stage, as the supervisor does.

        ZeroMQ connects the stage's DEALER in the background: until that is done the ROUTER has
        no route to "capture", and a command sent then is refused (it used to vanish, and the
        test hung on a stop or drain that never arrived). Retried until the stage is connected.
        """
        self.wait(lambda: self._try_send(command), what=f"capture connected for {command}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the stage and wait for its thread; ``timeout`` only bounds a hang."""
        self.command(Stop())
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"capture did not stop; {self.summary()}"
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self.thread.is_alive():
            self._try_send(Stop())
            self.thread.join(5)
        for sock in (self.events_sock, self.release_sock):
            sock.close(0)
        self.inbox.close()
        self.ring.close()
        self.ring.unlink()


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch):
    made: list[Harness] = []
    # ipc:// paths must fit a unix socket address (107 bytes): pytest's tmp_path may not.
    short = Path(tempfile.mkdtemp(prefix="edcap"))

    def make(sources: list[ScriptedSource | None], **kwargs: Any) -> tuple[Harness, Opener]:
        opener = Opener(sources)
        monkeypatch.setattr(capture, "open_source", opener)
        h = Harness(short / f"h{len(made)}", **kwargs)
        made.append(h)
        return h, opener

    yield make
    for h in made:
        h.close()
    shutil.rmtree(short, ignore_errors=True)


def test_frames_flow_and_sequence_is_contiguous(harness) -> None:
    h, _ = harness([ScriptedSource()])
    h.start()
    h.wait(lambda: len(h.frames) >= 20, what="frames")
    h.stop()
    seqs = [f.seq for f in h.frames]
    # strictly increasing; a gap is a frame dropped for want of a slot (this source is fast)
    assert seqs == sorted(set(seqs)) and seqs[0] == 0
    assert all((f.width, f.height) == (W, H) for f in h.frames)
    assert all(f.media_time is None for f in h.frames)  # live: the read time is the clock
    first = h.source_events()[0]
    assert isinstance(first, SourceConnected) and first.reconnect is False


def test_a_stalled_live_source_is_reported_and_reopened(harness) -> None:
    stalled = ScriptedSource(["frame", "frame", "block"])
    h, opener = harness([stalled, ScriptedSource()])
    h.start()
    h.wait(lambda: len(h.frames) >= 2, what="first frames")
    last_frame = stalled.returned_at  # the blocked third read cannot move it
    h.wait(lambda: any(isinstance(e, SourceLost) for e in h.source_events()), what="stall report")
    # Not before stall_timeout_s (0.5) without a frame: reported after it, not sooner. (How
    # much later depends on the machine's load; the wait above bounds a stall never noticed.)
    assert time.monotonic() - last_frame >= 0.5
    down = next(e for e in h.source_events() if isinstance(e, SourceLost))
    assert isinstance(down, SourceLost) and "no frame for 0.5s: source stalled" in down.error
    stalled.unblock.set()  # the blocked read returns (as FFmpeg's read timeout makes it)
    h.wait(lambda: len(opener.opened) == 2 and len(h.frames) >= 10, what="frames after reopen")
    last = h.source_events()[-1]
    assert isinstance(last, SourceConnected) and last.reconnect is True
    h.wait(lambda: stalled.closed, what="stalled source closed")
    assert not stalled.closed_during_read
    h.stop()


def test_a_read_that_never_returns_is_abandoned_and_its_source_closed_later(
    harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture, "HANG_GRACE_S", 0.3)
    hung = ScriptedSource(["frame", "block"])
    h, opener = harness([hung, ScriptedSource()])
    h.start()
    # stall (0.5 s) + grace (0.3 s): abandoned, a fresh source opened while the read still hangs
    h.wait(lambda: len(opener.opened) == 2 and len(h.frames) >= 5, what="fresh source")
    assert hung.reading and not hung.closed, "closed under a running read"
    assert h.stage is not None and h.stage.hung_calls == 1
    hung.unblock.set()
    h.wait(lambda: hung.closed, what="abandoned source closed once its read returned")
    assert not hung.closed_during_read
    h.stop()


def test_a_source_that_keeps_hanging_exits_the_process(harness, monkeypatch) -> None:
    monkeypatch.setattr(capture, "HANG_GRACE_S", 0.1)
    monkeypatch.setattr(capture, "MAX_HUNG_CALLS", 2)
    exits: list[int] = []

    class Exited(BaseException):
        pass

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise Exited

    monkeypatch.setattr(capture.os, "_exit", fake_exit)
    monkeypatch.setattr(capture.logging, "shutdown", lambda: None)
    sources = [ScriptedSource(["block"]), ScriptedSource(["block"])]
    h, _ = harness(sources)
    h.start()
    h.thread.join(60)  # bounds a hang only
    assert exits == [capture.EXIT_HUNG]
    assert isinstance(h.error, Exited)
    h.error = None
    for s in sources:
        s.unblock.set()


def test_backoff_grows_while_opening_fails_and_resets_after_a_frame(harness, monkeypatch) -> None:
    slept: list[float] = []
    original = capture.CaptureStage._sleep

    def record(self, seconds: float) -> None:
        slept.append(seconds)
        original(self, seconds)

    monkeypatch.setattr(capture.CaptureStage, "_sleep", record)
    # Three failed opens, a source that fails on its first read (opened but never delivered:
    # keep backing off), two more failed opens, then a good source that later fails once.
    failing = ScriptedSource(["fail"])
    good = ScriptedSource(["frame"] * 5 + ["fail"])
    h, opener = harness([None, None, None, failing, None, None, good, ScriptedSource()],
                        source={"reconnect": {"initial_backoff_s": 0.01, "max_backoff_s": 0.08,
                                              "jitter": 0.0}})  # fmt: skip
    h.start()
    h.wait(lambda: len(opener.opened) == 3 and len(h.frames) >= 8, what="recovery")
    h.stop()
    assert slept[:6] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.08, 0.08])
    # after `good` delivered frames, its failure starts over at the initial backoff
    assert slept[6] == pytest.approx(0.01)
    connected = [e for e in h.source_events() if isinstance(e, SourceConnected)]
    assert [e.reconnect for e in connected] == [True, True, True]
    assert opener.attempts == 8


def test_jittered_backoff_stays_within_bounds() -> None:
    import random

    from edged.config import ReconnectConfig

    cfg = ReconnectConfig(initial_backoff_s=0.5, max_backoff_s=30, jitter=0.2)
    delays = capture.backoff_delays(cfg, random.Random(1))
    got = [next(delays) for _ in range(12)]
    nominal = [min(0.5 * 2**i, 30) for i in range(12)]
    for d, n in zip(got, nominal, strict=True):
        assert n * 0.8 <= d <= n * 1.2
    assert len({round(d / n, 6) for d, n in zip(got, nominal, strict=True)}) > 6  # jittered


def test_a_looping_file_starting_over_is_not_a_reconnect(harness) -> None:
    first = ScriptedSource(["frame"] * 3 + ["eof"], live=False)
    h, opener = harness([first, ScriptedSource(["frame"] * 3 + ["eof"], live=False)],
                        source={"loop": True, "uri": "video.mp4", "fps": 200})  # fmt: skip
    h.start()
    h.wait(lambda: len(opener.opened) >= 2 and len(h.frames) >= 6, what="second pass")
    h.stop()
    assert first.closed
    connected = [e for e in h.source_events() if isinstance(e, SourceConnected)]
    assert all(e.reconnect is False for e in connected), connected


def test_a_read_error_reconnects_and_a_source_bug_is_treated_as_one(harness) -> None:
    h, opener = harness([ScriptedSource(["frame", "fail"]), ScriptedSource(["frame", "crash"]),
                         ScriptedSource()])  # fmt: skip
    h.start()
    h.wait(lambda: len(opener.opened) == 3 and len(h.frames) >= 5, what="third source")
    h.stop()
    errors = [e.error for e in h.source_events() if isinstance(e, SourceLost)]
    assert "scripted failure" in errors[0]
    assert "ZeroDivisionError" in errors[1]


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        (f"shape:{H * 2}x{W}x3", "larger than pipeline.max_frame_width/height"),
        (f"shape:{H}x{W}x4", "expected H×W×3 uint8"),
        (f"shape:{H}x{W}", "expected H×W×3 uint8"),
        (f"shape:{H * W * 3}", "expected H×W×3 uint8"),
        ("shape:0x0x3", "is empty"),
        ("float", "dtype float32"),
        ("none-array", "not an image array"),
    ],
)
def test_bad_frames_are_counted_as_errors_and_logged_not_fatal(harness, caplog, action, reason):
    h, _ = harness([ScriptedSource(["frame"] + [action] * 50)])
    with caplog.at_level(logging.ERROR, logger=capture.__name__):
        h.start()
        h.wait(lambda: h.counts()["error"] >= 50 and h.counts()["ok"] >= 5, what="errors counted")
        h.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == capture.__name__]
    assert any(reason in line for line in lines), lines
    assert len(lines) <= 2, "one log line per interval, not one per frame"


def test_a_source_larger_than_the_ring_is_reported_when_it_opens(harness, caplog) -> None:
    h, _ = harness([ScriptedSource(size=(W * 4, H))])
    with caplog.at_level(logging.ERROR, logger=capture.__name__):
        h.start()
        h.wait(lambda: h.source_events(), what="source event")
        h.stop()
    assert any("larger than pipeline.max_frame_width/height" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_stop_while_a_read_hangs_is_prompt_and_never_closes_under_the_read(harness) -> None:
    hung = ScriptedSource(["block"], live=False)
    h, _ = harness([hung], source={"uri": "video.mp4"})  # a file: no stall timeout at all
    h.start()
    h.wait(lambda: hung.reading, what="read started")
    # The read never returns by itself: a stop that waited for it would not return at all
    # (stop() fails on its deadline, which only tells "returned" from "hung").
    h.stop()
    assert not hung.closed, "closed under a running read"
    hung.unblock.set()
    poll_until(lambda: hung.closed, 30, "abandoned source never closed")
    assert not hung.closed_during_read


def test_drain_during_a_stall_ends_the_stream(harness) -> None:
    hung = ScriptedSource(["frame", "block"])
    h, _ = harness([hung, ScriptedSource()])
    h.start()
    h.wait(lambda: hung.reading, what="read started")
    h.command(Drain())
    hung.unblock.set()
    h.wait(lambda: any(f.end_of_stream for f in h.frames), what="end of stream")
    h.stop()


def test_lossless_waits_for_free_slots_instead_of_dropping(harness) -> None:
    source = ScriptedSource(["frame"] * 30 + ["eof"], live=False)
    h, _ = harness([source], lossless=True, source={"uri": "video.mp4"})
    h.auto_release = False  # downstream holds every slot: capture must wait, not drop
    h.start()
    h.wait(lambda: len(h.frames) == 4, what="a frame in every slot")  # ring_slots
    # Lossless waits for a slot before it reads: no fifth read, no drop. (Watched for a while:
    # a wrong fifth frame shows up in it on a fast machine; a slow one cannot fail wrongly.)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        h.pump()
        time.sleep(0.02)
    assert len(h.frames) == 4 and source.reads == 4
    for f in h.frames:
        h.release_sock.send(struct.pack("<qq", f.frame_slot, f.seq))
    h.auto_release = True
    h.wait(lambda: any(f.end_of_stream for f in h.frames), what="end of stream")
    h.stop()
    assert [f.seq for f in h.frames if not f.end_of_stream] == list(range(30))
    assert h.counts()["dropped"] == 0
    # The file's own clock (its 200 fps), whatever pace the reads had: the tracker's time.
    assert [f.media_time for f in h.frames if not f.end_of_stream] == [i / 200 for i in range(30)]


def test_a_file_is_decoded_straight_into_the_frame_slots(harness, monkeypatch) -> None:
    copies: list[tuple[int, ...]] = []
    store = capture.CaptureStage.store

    def counting_store(self, image, slot, seq):  # the copy into a slot that in-place avoids
        copies.append(image.shape)
        return store(self, image, slot, seq)

    monkeypatch.setattr(capture.CaptureStage, "store", counting_store)
    source = DecodingSource(["frame", "shape:32x40x3", "frame", "eof"])
    h, _ = harness([source], lossless=True, source={"uri": "video.mp4"})
    h.auto_release = False  # keep every slot's content for the check below
    h.start()
    h.wait(lambda: any(f.end_of_stream for f in h.frames), what="end of stream")
    h.stop()
    frames = [f for f in h.frames if not f.end_of_stream]
    assert [f.seq for f in frames] == [0, 1, 2]
    assert source.in_place == 2  # the 40×32 frame did not fit the slot view: copied instead
    assert copies == [(32, 40, 3)]  # only the frame that missed the slot view was copied
    for frame, value in zip(frames, (1, 0, 3), strict=True):
        stored = h.ring.array(frame.frame_slot, (frame.height, frame.width, 3), np.uint8)
        assert h.ring.holds(frame.frame_slot, frame.seq)
        assert (stored == value).all(), (frame.seq, stored.flat[0])
    assert len({f.frame_slot for f in frames}) == 3
    assert h.counts()["dropped"] == 0 and h.counts()["error"] == 0


def reclaim_while_reading(harness, slow: ScriptedSource, **source: Any) -> list[int]:
    """Frame slots handed out after a reclaim that arrived during a slow read."""
    h, _ = harness([slow], **({"source": source} if source else {}))
    h.auto_release = False  # downstream keeps every frame: any slot reuse is a double use
    h.start()
    h.wait(lambda: len(h.frames) == 1 and slow.reading, what="slow read")
    h.command(Reclaim(FRAMES))
    # The stage answers commands while the read runs: let the read end only once it has.
    h.wait(lambda: h.stage.rt.allocator.reclaims == 1, what="reclaim answered during the read")
    slow.unblock.set()
    h.wait(lambda: h.counts()["dropped"] >= 3, what="ring full after the reclaim")
    h.stop()
    return [f.frame_slot for f in h.frames[1:]]


def test_a_reclaim_during_a_direct_read_sends_no_reclaimed_slot(harness) -> None:
    """A slot decoded into while a reclaim freed it must not travel as that slot: the frame is
    stored again in a slot acquired afresh."""
    slow = DecodingSource(["frame", "block"])
    after = reclaim_while_reading(harness, slow, uri="video.mp4", fps=200)
    assert len(after) == 4 and len(set(after)) == 4, after  # four slots, each used once


def test_reclaim_during_a_slow_read_never_hands_out_a_slot_twice(harness) -> None:
    """A reclaim (after a downstream restart) may arrive while a read runs: the stage answers
    commands then, so it must not hold a slot across the read, or that slot would be both
    freed and written, and handed out twice."""
    after = reclaim_while_reading(harness, ScriptedSource(["frame", "block"]))
    assert len(after) == 4 and len(set(after)) == 4, after  # four slots, each used once


# -- BlockingCall -------------------------------------------------------------------------------


def test_blocking_call_returns_results_and_errors() -> None:
    call = capture.BlockingCall()
    call.submit(lambda: 42)
    assert call.wait(5) and call.result() == 42
    call.submit(lambda: 1 / 0)
    assert call.wait(5)
    with pytest.raises(ZeroDivisionError):
        call.result()
    assert call.close() is True


def test_blocking_call_refuses_a_second_call_while_busy_and_abandons_cleanly() -> None:
    gate = threading.Event()
    cleaned: list[Any] = []
    call = capture.BlockingCall()
    call.submit(lambda: gate.wait() and "late result")
    assert not call.wait(0.05) and call.busy and call.running_for > 0
    with pytest.raises(RuntimeError):
        call.submit(lambda: None)
    with pytest.raises(RuntimeError):
        call.result()
    assert call.close(cleaned.append) is False
    gate.set()
    poll_until(lambda: cleaned, 30, "cleanup never ran")
    assert cleaned == ["late result"]
    with pytest.raises(RuntimeError):
        call.submit(lambda: None)


def test_stop_during_the_grace_after_a_stall_hands_the_source_to_the_io_thread(
    harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A grace no test waits out: a stop that waited for it fails on stop()'s deadline.
    monkeypatch.setattr(capture, "HANG_GRACE_S", 3600.0)
    hung = ScriptedSource(["frame", "block"])
    h, _ = harness([hung])
    h.start()
    h.wait(lambda: any(isinstance(e, SourceLost) for e in h.source_events()), what="stall report")
    assert hung.reading  # the stage now waits HANG_GRACE_S for the read to return
    h.stop()
    assert not hung.closed
    hung.unblock.set()
    poll_until(lambda: hung.closed, 30, "source never closed after its read returned")
    assert not hung.closed_during_read


def test_a_stream_s_read_gives_up_after_capture_s_stall_limit_not_with_it(monkeypatch) -> None:
    """Equal limits raced: a frozen stream was logged as "stalled" or as "stopped delivering" by
    chance. FFmpeg's read now gives up a margin after the stall limit (capture's own check
    always fires first) and before capture's grace for a blocked call runs out (never
    abandoned)."""
    from edged.config import SourceConfig
    from edged.sources import open_source, opencv

    opened = {}

    class Recorder:
        def __init__(self, uri, *args, **kwargs):
            opened.update(kwargs, uri=uri)

    monkeypatch.setattr(opencv, "OpenCVSource", Recorder)
    config = SourceConfig(uri="rtsp://127.0.0.1:8554/cam", reconnect={"stall_timeout_s": 2.0})
    open_source(config)
    assert opened["uri"] == "rtsp://127.0.0.1:8554/cam"
    assert 2.0 < opened["read_timeout_s"] < 2.0 + capture.HANG_GRACE_S


def test_a_batch_run_over_a_file_that_opens_but_holds_no_frame_fails(harness) -> None:
    """Random bytes FFmpeg can probe but not decode (one file in ~40 opens): no end of stream
    after zero frames (the daemon used to exit 0, "done"), a fatal error naming the file."""
    h, opener = harness([ScriptedSource(["eof"], live=False)], lossless=True,
                        source={"uri": "junk.mp4"})  # fmt: skip
    h.start()
    fatal = h.wait(lambda: next((e for e in h.events if isinstance(e, Fatal)), None),
                   what="a fatal error")  # fmt: skip
    h.stop()
    assert "opened but no frame could be read" in fatal.error
    assert not h.frames and opener.attempts == 1  # no end-of-stream marker, no second open


def test_a_looping_file_that_holds_no_frame_is_retried_with_backoff_not_spun(harness) -> None:
    """Live and looping: an empty open is a source failure (reported, backed off), not an end
    to loop from at once; a good file afterwards flows and resets the count."""
    empty = [ScriptedSource(["eof"], live=False) for _ in range(3)]
    h, opener = harness([*empty, ScriptedSource(live=False)],
                        source={"uri": "video.mp4", "loop": True})  # fmt: skip
    h.start()
    h.wait(lambda: len(h.frames) >= 5, what="frames from the good file")
    h.stop()
    lost = [e for e in h.source_events() if isinstance(e, SourceLost)]
    assert [e.error for e in lost] == ["file source 'fake://' opened but no frame could be "
                                        "read from it"] * 3  # fmt: skip
    assert opener.attempts == 4 and h.stage.empty_opens == 0
    assert not any(f.end_of_stream for f in h.frames)
