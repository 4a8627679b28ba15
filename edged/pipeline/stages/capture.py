"""Capture: read frames from the source into the frame ring, retrying a dead source.

Live sources never block on the pipeline: with no free slot the new frame is dropped and counted.
Files in lossless mode wait for a free slot instead, so every frame is processed once, in order.
"""

from __future__ import annotations

import logging
import random
import time

import numpy as np

from edged.config import ReconnectConfig, SourceConfig
from edged.pipeline.messages import CAPTURE, Frame
from edged.pipeline.runtime import FRAMES, StageRuntime, StageSetup, StopRequested
from edged.sources import FrameSource, SourceError, open_source

log = logging.getLogger(__name__)


def backoff_delays(cfg: ReconnectConfig, rng: random.Random):
    """Exponential backoff with ± jitter, capped: 0.5, 1, 2, 4, ... max_backoff_s."""
    delay = cfg.initial_backoff_s
    while True:
        yield delay * (1 + rng.uniform(-cfg.jitter, cfg.jitter))
        delay = min(delay * 2, cfg.max_backoff_s)


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


class CaptureStage:
    def __init__(self, rt: StageRuntime, source_cfg: SourceConfig) -> None:
        self.rt = rt
        self.cfg = source_cfg
        self.ring = rt.rings[FRAMES]
        self.max_w = rt.setup.config.pipeline.max_frame_width
        self.max_h = rt.setup.config.pipeline.max_frame_height
        # A restarted capture continues the sequence from what the ring last held, so
        # subscribers never see a number twice.
        self.seq = self.ring.latest_seq() + 1
        self.source: FrameSource | None = None
        self.rng = random.Random()
        self.ended = False

    def open_with_retry(self) -> FrameSource | None:
        delays = backoff_delays(self.cfg.reconnect, self.rng)
        attempt = 0
        while not self.rt.stopping and not self.rt.signalled:
            attempt += 1
            try:
                source = open_source(self.cfg)
            except SourceError as exc:
                delay = next(delays)
                log.warning("source unavailable (attempt %d): %s; retrying in %.1fs",
                            attempt, exc, delay)  # fmt: skip
                self.rt.send_event("source", connected=False, error=str(exc))
                self._sleep(delay)
                continue
            info = source.info
            log.info("source open: %s %dx%d @ %.1f fps (%s)", info.uri, info.width, info.height,
                     info.fps, info.kind)  # fmt: skip
            self.rt.send_event(
                "source", connected=True, reconnect=self.source is not None or attempt > 1,
                width=info.width, height=info.height, fps=info.fps, kind=info.kind,
                live=info.live, uri=info.uri,
            )  # fmt: skip
            return source
        return None

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.rt.stopping and not self.rt.signalled and time.monotonic() < end:
            self.rt.poll(int(min(0.1, max(0.0, end - time.monotonic())) * 1000) + 1)

    def store(self, image: np.ndarray, slot: int, seq: int) -> bool:
        h, w = image.shape[:2]
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            log.error("frame %d has shape %s dtype %s; expected H×W×3 uint8", seq, image.shape,
                      image.dtype)  # fmt: skip
            return False
        if w > self.max_w or h > self.max_h:
            log.error("frame %d is %dx%d, larger than pipeline.max_frame_width/height %dx%d",
                      seq, w, h, self.max_w, self.max_h)  # fmt: skip
            return False
        self.ring.array(slot, image.shape, np.uint8)[...] = image
        self.ring.mark(slot, seq)
        return True

    def end_of_stream(self) -> None:
        log.info("end of stream after %d frames", self.seq)
        self.rt.send_frame(Frame(self.seq, time.time(), time.monotonic(), 0, 0, -1,
                                 end_of_stream=True))  # fmt: skip
        self.rt.send_event("eos", frames=self.seq)
        self.ended = True

    def run(self) -> None:
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
            slot = self.rt.acquire_slot(self.seq, block=lossless)
            start = time.monotonic()
            try:
                image = self.source.read()
            except SourceError as exc:
                log.warning("%s", exc)
                self.reconnect(slot)
                continue
            end = time.monotonic()
            if image is None:
                if slot is not None:
                    self.rt.allocator.reclaim_slot(slot)
                if self.cfg.loop:
                    self.source.close()
                    self.source = self.open_with_retry()
                    continue
                self.end_of_stream()
                break
            seq = self.seq
            self.seq += 1
            if slot is None:
                self.rt.count("dropped")  # every slot busy downstream: the newest frame loses
                self.rt.maybe_flush_stats()
                continue
            if not self.store(image, slot, seq):
                self.rt.allocator.reclaim_slot(slot)
                self.rt.count("error")
                continue
            stored = time.monotonic()
            h, w = image.shape[:2]
            frame = Frame(seq, time.time(), end, w, h, slot, ((CAPTURE, start, stored),))
            self.rt.send_frame(frame)
            self.rt.count("ok")
            self.rt.poll(0)
        # Stay alive (idle) after the end so the pipeline drains and the supervisor decides.
        while not self.rt.stopping:
            self.rt.poll(200)
            if self.rt.signalled and not self.ended:
                self.end_of_stream()

    def reconnect(self, slot: int | None) -> None:
        if slot is not None:
            self.rt.allocator.reclaim_slot(slot)
        self.rt.send_event("source", connected=False, error="read failed")
        if self.source is not None:
            self.source.close()
        delay = next(backoff_delays(self.cfg.reconnect, self.rng))
        self._sleep(delay)
        self.source = self.open_with_retry()


def run(setup: StageSetup) -> None:
    rt = StageRuntime(setup)
    rt.install_signal_handlers()
    stage = CaptureStage(rt, setup.config.source)
    try:
        stage.run()
    except StopRequested:
        pass
    finally:
        if stage.source is not None:
            stage.source.close()
        rt.close()
