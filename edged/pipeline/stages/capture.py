"""Capture: read frames from the source into the frame ring; reopen a failed or stalled source.

Live sources never block on the pipeline: with no free slot the new frame is dropped and counted.
Files in lossless mode wait for a free slot instead, so every frame is processed once, in order.

Every blocking source call (open, read) runs on an I/O thread while the stage's own thread keeps
the clock and keeps answering the supervisor (stop, drain, slot reclaims), so a source that hangs
can never wedge the stage:

- a live source that delivers no frame for ``source.reconnect.stall_timeout_s`` is stalled: the
  supervisor hears ``connected=False`` at once (readiness follows) and the source is reopened;
- an open that does not return within ``OPEN_TIMEOUT_S`` (+ grace) counts as a failed attempt;
- a call still blocked ``HANG_GRACE_S`` after its deadline is abandoned (its thread closes the
  source whenever the call returns; closing it under a running read could crash the process)
  and a fresh source is opened; after ``MAX_HUNG_CALLS`` abandoned calls the process exits so
  that the supervisor restarts capture from scratch (a restart, counted and logged there);
- reopening waits with exponential backoff and jitter; the backoff only resets once a reopened
  source has delivered a frame, so a source that opens but never delivers keeps backing off.

A reopen after an error or a stall is reported as a reconnect (``edged_source_reconnects_total``);
a looping file starting over is not.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from edged.config import ReconnectConfig, SourceConfig
from edged.pipeline.backoff import Backoff
from edged.pipeline.messages import CAPTURE, EndOfStream, Fatal, Frame, SourceConnected, SourceLost
from edged.pipeline.stage_runtime import FRAMES, StageRuntime, StopRequested
from edged.sources import OPEN_TIMEOUT_S, FrameSource, SourceError, SourceUnusable, open_source

log = logging.getLogger(__name__)

HANG_GRACE_S = 5.0  # how long past its deadline a blocked call may take before it is abandoned
MAX_HUNG_CALLS = 3  # abandoned calls (each leaks a thread) before the process starts over
EXIT_HUNG = 75  # exit status when the source keeps hanging (the supervisor restarts capture)
WAIT_STEP_S = 0.1  # how often the stage answers the supervisor while a call runs


def backoff_delays(cfg: ReconnectConfig, rng: random.Random) -> Iterator[float]:
    """The waits before each reopening: 0.5, 1, 2, 4, ... max_backoff_s, each ± jitter."""
    backoff = Backoff(cfg.initial_backoff_s, cfg.max_backoff_s, jitter=cfg.jitter)
    return (backoff.delay(failures, rng) for failures in itertools.count(1))


class SourceStalled(SourceError):
    """A source call did not return in time."""


class _Drained(Exception):
    """A drain was requested while waiting for a call that may be abandoned."""


class Pacer:
    """Sleeps so that a file plays at its frame rate (realtime mode)."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self.next_due = time.monotonic()

    def wait(self) -> None:
        now = time.monotonic()
        if self.next_due > now:
            time.sleep(self.next_due - now)
            self.next_due += self.interval
        else:  # running late: don't try to catch up with a burst
            self.next_due = now + self.interval


class RateLimit:
    """At most ``fps`` frames a second (a camera's ``fps_limit``): frames read sooner are
    skipped at capture, before they cost a slot, a letterbox or an inference. A frame up to a
    tenth of an interval early still passes (sources jitter), and the schedule does not drift."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self.next_due: float | None = None

    def admit(self, now: float) -> bool:
        if self.next_due is not None and now < self.next_due - 0.1 * self.interval:
            return False
        late = self.next_due is None or now - self.next_due > self.interval
        self.next_due = (now if late else self.next_due) + self.interval  # type: ignore[operator]
        return True


class BlockingCall:
    """A daemon thread that runs one blocking call at a time (source open/read) for the stage.

    The caller submits a call, then polls :meth:`wait` with its own deadline. A call that never
    returns can be abandoned with :meth:`close`: the thread runs the cleanup on the call's result
    if it ever returns, then ends.
    """

    def __init__(self, name: str = "capture-io") -> None:
        self._cond = threading.Condition()
        self._job: Callable[[], Any] | None = None
        self._result: Any = None
        self._error: Exception | None = None
        self._done = threading.Event()
        self._done.set()
        self._closed = False
        self._cleanup: Callable[[Any], None] | None = None
        self.started_at: float | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return not self._done.is_set()

    @property
    def running_for(self) -> float:
        """Seconds the current call has been running (0 when idle)."""
        if not self.busy or self.started_at is None:
            return 0.0
        return time.monotonic() - self.started_at

    def submit(self, job: Callable[[], Any]) -> None:
        with self._cond:
            if self._closed or self.busy:
                raise RuntimeError("BlockingCall is closed or busy")
            self._job = job
            self._result, self._error = None, None
            self.started_at = time.monotonic()
            self._done.clear()
            self._cond.notify()

    def wait(self, timeout: float) -> bool:
        """True once the call returned (or raised)."""
        return self._done.wait(max(0.0, timeout))

    def result(self) -> Any:
        """The call's return value; re-raises what it raised."""
        if self.busy:
            raise RuntimeError("call still running")
        if self._error is not None:
            raise self._error
        return self._result

    def close(self, cleanup: Callable[[Any], None] | None = None) -> bool:
        """End the thread. False when a call is still running: it is abandoned, and ``cleanup``
        gets its result if it ever returns. Otherwise ``cleanup`` is not called."""
        with self._cond:
            self._closed = True
            busy = self.busy
            if busy:
                self._cleanup = cleanup
            self._cond.notify()
        return not busy

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                job = self._job
                if job is None:
                    return
            result: Any = None
            error: Exception | None = None
            try:
                result = job()
            except Exception as exc:  # handed to the caller, which decides
                error = exc
            with self._cond:
                self._job = None
                self._result, self._error = result, error
                cleanup = self._cleanup if self._closed else None
                closed = self._closed
                self._done.set()
            if cleanup is not None:
                with contextlib.suppress(Exception):
                    cleanup(result)
            if closed:
                return


class DirectRead(NamedTuple):
    """A frame slot lent to one read: ``view`` is the slot as an image, ``reclaims`` the
    allocator's reclaim count when it was lent (a change means the slot is no longer ours)."""

    slot: int
    view: np.ndarray
    reclaims: int


class CaptureStage:
    def __init__(
        self, rt: StageRuntime, source_cfg: SourceConfig, fps_limit: float | None = None
    ) -> None:
        self.rt = rt
        self.cfg = source_cfg
        self.camera = rt.camera
        # Lossless plays every frame of the file: a rate limit would have to skip some.
        self.limit = RateLimit(fps_limit) if fps_limit and not rt.lossless else None
        self.ring = rt.ring(FRAMES, rt.camera)
        self.max_w = rt.setup.config.pipeline.max_frame_width
        self.max_h = rt.setup.config.pipeline.max_frame_height
        # A restarted capture continues the sequence from what the ring last held, so
        # subscribers never see a number twice.
        self.seq = self.ring.latest_seq() + 1
        self.source: FrameSource | None = None
        self.rng = random.Random()
        self.delays = backoff_delays(self.cfg.reconnect, self.rng)
        self.ended = False
        self.io = BlockingCall()
        self.hung_calls = 0
        self.failed = False  # an open or read failed since the last successful open
        self.awaiting_first_frame = False  # reset the backoff once the new source delivers
        self.empty_opens = 0  # opens in a row that delivered no frame at all

    # -- blocking calls with a deadline ----------------------------------------------------------

    def _wait_io(self, limit_s: float | None, interruptible: bool = False) -> bool:
        """Wait for the I/O thread, answering the supervisor meanwhile; False on the deadline.

        Raises StopRequested on "stop", and _Drained on a drain when ``interruptible``.
        """
        deadline = None if limit_s is None else time.monotonic() + limit_s
        while True:
            left = WAIT_STEP_S if deadline is None else deadline - time.monotonic()
            if self.io.wait(min(WAIT_STEP_S, left)):
                return True
            self.rt.poll(0)  # commands (stop, drain, reclaim), stats, parent check
            if self.rt.stopping:
                raise StopRequested
            if interruptible and self.rt.signalled:
                raise _Drained
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _call(
        self, job: Callable[[], Any], limit_s: float | None, stalled: str = "",
        interruptible: bool = False,
    ) -> Any:  # fmt: skip
        """``job()`` on the I/O thread; :class:`SourceStalled` (``stalled``) past ``limit_s``."""
        self.io.submit(job)
        if not self._wait_io(limit_s, interruptible):
            raise SourceStalled(stalled or f"no answer within {limit_s:g}s")
        return self.io.result()

    def _release_io(self, cleanup: Callable[[Any], None]) -> bool:
        """Make the I/O thread idle: give a blocked call a grace period, then abandon it.

        True when the thread is idle (the caller may close what the call used); False when the
        call was abandoned: ``cleanup`` then gets its result if it ever returns.
        """
        if not self.io.busy or self._wait_io(HANG_GRACE_S):
            return True
        running = self.io.running_for
        self.io.close(cleanup)
        self.io = BlockingCall()
        self.hung_calls += 1
        log.error("a source call has been blocked for %.0fs; abandoned it (%d of %d allowed)",
                  running, self.hung_calls, MAX_HUNG_CALLS)  # fmt: skip
        if self.hung_calls >= MAX_HUNG_CALLS:
            log.error("the source keeps hanging; exiting so that the supervisor restarts capture")
            logging.shutdown()
            os._exit(EXIT_HUNG)
        return False

    # -- opening ---------------------------------------------------------------------------------

    def _give_up(self, exc: SourceError) -> bool:
        """A batch run (lossless, or exit_at_end) over a file that is not there, is no video or
        holds no frame: fail now (True), waiting will not change the file. Else False."""
        if not (self.rt.lossless or self.rt.setup.config.pipeline.exit_at_end):
            return False
        log.error("cannot run: %s", exc)
        self.rt.send_event(Fatal(str(exc)))
        return True

    def _wait_to_retry(self, attempt: int, exc: SourceError) -> None:
        self.failed = True
        delay = next(self.delays)
        log.warning("source unavailable (attempt %d): %s; retrying in %.1fs",
                    attempt, exc, delay)  # fmt: skip
        self.rt.send_event(SourceLost(str(exc)))
        self._sleep(delay)

    def open_with_retry(self, after_failure: bool = False) -> FrameSource | None:
        """Open the source, retrying with backoff; None when the stage is told to stop first."""
        self.failed = self.failed or after_failure
        attempt = 0
        limit = OPEN_TIMEOUT_S + HANG_GRACE_S
        while not self.rt.stopping and not self.rt.signalled:
            attempt += 1
            try:
                source = self._call(lambda: open_source(self.cfg), limit,
                                    f"opening the source took over {limit:g}s",
                                    interruptible=True)  # fmt: skip
            except _Drained:
                # Stopping while a connect hangs: nothing was captured, nothing to wait for.
                self.io.close(_close_source)
                self.io = BlockingCall()
                return None
            except SourceUnusable as exc:
                if self._give_up(exc):
                    return None
                self._wait_to_retry(attempt, exc)
                continue
            except SourceError as exc:
                if isinstance(exc, SourceStalled) and self._release_io(_close_source):
                    with contextlib.suppress(Exception):
                        _close_source(self.io.result())  # it opened after all, too late
                self._wait_to_retry(attempt, exc)
                continue
            info = source.info
            log.info("source open: %s %dx%d @ %.1f fps (%s)", info.uri, info.width, info.height,
                     info.fps, info.kind)  # fmt: skip
            if info.width > self.max_w or info.height > self.max_h:
                log.error("source frames are %dx%d, larger than pipeline.max_frame_width/height "
                          "%dx%d: every frame will be refused as an error until the limits are "
                          "raised", info.width, info.height, self.max_w, self.max_h)  # fmt: skip
            self.rt.send_event(SourceConnected(
                width=info.width, height=info.height, fps=info.fps, kind=info.kind, uri=info.uri,
                # Who sets the frame rate: the camera or stream, or edged pacing a file or the
                # test pattern (not called "live": that is a pipeline mode, shown beside it).
                paced_by="source" if info.live else "edged", reconnect=self.failed,
            ))  # fmt: skip
            self.failed = False
            self.awaiting_first_frame = True
            return source
        return None

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.rt.stopping and not self.rt.signalled and time.monotonic() < end:
            self.rt.poll(int(min(0.1, max(0.0, end - time.monotonic())) * 1000) + 1)

    # -- frames ----------------------------------------------------------------------------------

    def check_frame(self, image: object) -> str | None:
        """Why ``image`` cannot go into the frame ring, or None when it can."""
        if not isinstance(image, np.ndarray):
            return f"is a {type(image).__name__}, not an image array"
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            return f"has shape {image.shape} dtype {image.dtype}; expected H×W×3 uint8"
        h, w = image.shape[:2]
        if h == 0 or w == 0:
            return "is empty"
        if w > self.max_w or h > self.max_h:
            return (f"is {w}x{h}, larger than pipeline.max_frame_width/height "
                    f"{self.max_w}x{self.max_h}")  # fmt: skip
        return None

    def store(self, image: np.ndarray, slot: int, seq: int) -> bool:
        problem = self.check_frame(image)
        if problem is not None:
            self._bad_frame(seq, problem)
            return False
        self.ring.array(slot, image.shape, np.uint8)[...] = image
        self.ring.mark(slot, seq)
        return True

    def _bad_frame(self, seq: int, problem: str) -> None:
        """Log a refused frame: the first at once, then one line per interval with a count."""
        if (more := self.rt.log_throttle.allow("bad-frame")) is not None:
            log.error("frame %d %s; refused%s", seq, problem, more)

    def read_frame(self, into: np.ndarray | None = None) -> np.ndarray | None:
        """The next frame; SourceError (SourceStalled for a live source past its stall timeout).

        ``into``: decode straight into this array (a frame slot) when the source can.
        """
        source = self.source
        assert source is not None
        limit = self.cfg.reconnect.stall_timeout_s if source.info.live else None
        stalled = f"no frame for {limit:g}s: source stalled" if limit is not None else ""
        job = source.read if into is None else functools.partial(source.read_into, into)
        try:
            return self._call(job, limit, stalled)
        except (SourceError, StopRequested):
            raise
        except Exception as exc:  # a source bug or a library error: treat as a failed read
            raise SourceError(f"reading the source failed: {type(exc).__name__}: {exc}") from exc

    def end_of_stream(self) -> None:
        log.info("end of stream after %d frames", self.seq)
        self.rt.send_frame(Frame(self.seq, time.time(), time.monotonic(), 0, 0, -1,
                                 end_of_stream=True, camera=self.camera))  # fmt: skip
        self.rt.send_event(EndOfStream(self.seq))
        self.ended = True

    def serve(self, after_frames: Callable[[], None] | None = None) -> None:
        """The process's loop: capture always comes first in its process (no frames come in)."""
        lossless = self.rt.lossless
        self.source = self.open_with_retry()
        pacer = None
        while self.source is not None and not self.rt.stopping:
            if self.rt.signalled:
                self.end_of_stream()
                break
            info = self.source.info
            if pacer is None and not info.live:
                pacer = None if lossless else Pacer(self.cfg.fps or info.fps)
            if pacer is not None:
                pacer.wait()  # before the read: a paced file frame "arrives" when it is due
            direct = self.direct_slot()
            if lossless and direct is None:
                # Wait for room before reading (back-pressure up to the file), but hold no slot
                # during the read: a reclaim after a downstream restart may free every slot.
                self.rt.allocator.reclaim_slot(self.rt.acquire_slot(self.seq, block=True))
            start = time.monotonic()
            try:
                image = self.read_frame(None if direct is None else direct.view)
            except SourceError as exc:
                self.give_back(direct)
                self.reconnect(str(exc))
                continue
            end = time.monotonic()
            if image is None:
                self.give_back(direct)
                if self.awaiting_first_frame:
                    # Opened, yet not one frame: bytes FFmpeg can probe but not decode (one
                    # random file in ~40 opens). Not an end of stream, and looping it would
                    # reopen without pause: unusable, as if it had not opened.
                    self.close_source()
                    self.empty_opens += 1
                    empty = SourceUnusable(f"{info.kind} source {info.uri!r} opened but no "
                                           "frame could be read from it")  # fmt: skip
                    if self._give_up(empty):
                        break
                    self._wait_to_retry(self.empty_opens, empty)
                    self.source = self.open_with_retry(after_failure=True)
                    continue
                if self.cfg.loop:
                    self.close_source()
                    self.source = self.open_with_retry()
                    continue
                self.end_of_stream()
                break
            if self.awaiting_first_frame:
                self.awaiting_first_frame = False
                self.empty_opens = 0
                self.delays = backoff_delays(self.cfg.reconnect, self.rng)
            if self.limit is not None and not self.limit.admit(end):
                self.give_back(direct)  # over the camera's fps_limit: skipped, not a drop
                self.rt.poll(0)
                continue
            seq = self.seq
            self.seq += 1
            fps = self.cfg.fps or info.fps
            media_time = seq / fps if lossless and not info.live and fps else None
            if direct is not None and image is direct.view and self.still_ours(direct):
                self.ring.mark(direct.slot, seq)  # decoded in place: nothing to copy
                self.send(Frame(seq, time.time(), end, image.shape[1], image.shape[0],
                                direct.slot, ((CAPTURE, start, time.monotonic()),),
                                media_time=media_time, camera=self.camera))  # fmt: skip
                continue
            self.give_back(direct)
            slot = self.rt.acquire_slot(seq, block=lossless)
            if slot is None:
                self.rt.count("dropped")  # every slot busy downstream: the newest frame loses
                # Answer the supervisor here too: when every slot is stranded by a dead stage,
                # its "reclaim" is the only way out (and stop/drain must still get through).
                self.rt.poll(0)
                continue
            if not self.store(image, slot, seq):
                self.rt.allocator.reclaim_slot(slot)
                self.rt.count("error")
                self.rt.poll(0)
                continue
            stored = time.monotonic()
            h, w = image.shape[:2]
            self.send(Frame(seq, time.time(), end, w, h, slot, ((CAPTURE, start, stored),),
                            media_time=media_time, camera=self.camera))  # fmt: skip
        # Stay alive (idle) after the end so the pipeline drains and the supervisor decides.
        while not self.rt.stopping:
            self.rt.poll(200)
            if self.rt.signalled and not self.ended:
                self.end_of_stream()

    def direct_slot(self) -> DirectRead | None:
        """A frame slot to decode the next frame straight into, or None.

        Only for files: their reads are never abandoned (no stall timeout), so nothing can
        write into a slot after it was handed on. Saves copying every frame (0.6 ms at 720p).
        Lossless waits here for a free slot; realtime takes one only if free.
        """
        source, allocator = self.source, self.rt.allocator
        info = source.info if source is not None else None
        if info is None or info.live or not hasattr(source, "read_into") or allocator is None:
            return None
        if not (0 < info.width <= self.max_w and 0 < info.height <= self.max_h):
            return None
        slot = self.rt.acquire_slot(self.seq, block=self.rt.lossless)
        if slot is None:
            return None
        view = self.ring.array(slot, (info.height, info.width, 3), np.uint8)
        return DirectRead(slot, view, allocator.reclaims)

    def still_ours(self, direct: DirectRead) -> bool:
        """No reclaim (after a downstream restart) took the slot back during the read."""
        return self.rt.allocator.reclaims == direct.reclaims

    def give_back(self, direct: DirectRead | None) -> None:
        """Return a slot taken for a direct read that did not become a frame."""
        if direct is not None and self.still_ours(direct):
            self.rt.allocator.reclaim_slot(direct.slot)

    def send(self, frame: Frame) -> None:
        if self.rt.send_frame(frame):
            self.rt.count("ok")
        self.rt.poll(0)

    def reconnect(self, error: str) -> None:
        """After a failed or stalled read: report it, close the source, back off, reopen."""
        log.warning("%s; reconnecting", error)
        self.rt.send_event(SourceLost(error))
        self.close_source()
        self._sleep(next(self.delays))
        self.source = self.open_with_retry(after_failure=True)

    def close_source(self) -> None:
        """Close the current source, never under a call still running on it."""
        source = self.source
        if source is None:
            return
        # On StopRequested the source stays set, for close() to hand to the busy I/O thread.
        idle = self._release_io(_close_source_of(source))
        self.source = None
        if idle:
            _close_source(source)

    def close(self) -> None:
        """At exit: close the source unless a call on it is still running (never under it)."""
        source, self.source = self.source, None
        if self.io.close(_close_source_of(source)):
            _close_source(source)


def _close_source_of(source: object) -> Callable[[Any], None]:
    """A cleanup for an abandoned call on ``source``: close the source once the call returns."""
    return lambda _result: _close_source(source)


def _close_source(source: object) -> None:
    if source is not None:
        with contextlib.suppress(Exception):
            source.close()  # type: ignore[attr-defined]


def open_stage(rt: StageRuntime) -> CaptureStage:
    camera = rt.cameras.get(rt.camera)
    if camera is None:  # no camera list given (a bare setup): the config's single source
        return CaptureStage(rt, rt.setup.config.source)
    return CaptureStage(rt, camera.source, camera.fps_limit)
