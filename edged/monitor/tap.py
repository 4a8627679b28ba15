"""The publish stage's side of the shadow monitor: now and then, a copy of a published frame
and its detections to the helper, without ever waiting.

Cost on the live path, per frame: a clock read, a comparison and a sum over the frame's
timings. At most once every ``every_s``, when the helper can take it (a PUSH with a
high-water mark of 1 and ``IMMEDIATE``: nothing queues for a helper that is not connected),
the frame is copied out of its slot (before the slot goes back) and sent with NOBLOCK. A
helper that is busy, stopped (SIGSTOP) or absent makes the send fail at once: the sample is
counted as dropped and the frame goes on. Nothing else is on the live path.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import zmq

from edged.monitor.config import ShadowConfig
from edged.monitor.messages import ShadowSample, sample_endpoint
from edged.pipeline.messages import INFER, Frame
from edged.pipeline.ring import SharedRing
from edged.pipeline.stage_runtime import FRAMES, ring_key

log = logging.getLogger(__name__)


def inference_seconds(frame: Frame) -> float:
    return sum(end - start for stage, start, end in frame.timings if stage == INFER)


class ShadowTap:
    def __init__(
        self,
        cfg: ShadowConfig,
        camera_id: str,
        rings: Mapping[str, SharedRing],
        ctx: zmq.Context,
        runtime_dir: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_s = cfg.every_s
        self.camera_id = camera_id  # of frames without one (a one-camera daemon)
        self.rings = rings  # the stage's own mapping: cameras a reload adds show up in it
        self.clock = clock
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.SNDHWM, 1)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)  # no queue towards a helper not (yet) there
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(sample_endpoint(runtime_dir))
        self.next_due = 0.0
        self.infer_s = 0.0  # live inference time not yet reported to the helper
        self.sent = 0
        self.dropped = 0

    def offer(self, frame: Frame) -> None:
        """Every published frame, while it still holds its frame slot; never blocks."""
        self.infer_s += inference_seconds(frame)
        now = self.clock()
        if now < self.next_due or frame.detections is None or frame.model is None:
            return
        self.next_due = now + self.every_s
        if not self.sock.poll(0, zmq.POLLOUT):  # full or nobody there: no copy made
            self.dropped += 1
            return
        try:
            self._send(frame)
        except zmq.Again:
            self.dropped += 1
        except Exception:  # the monitor must never fail a frame's publishing
            self.dropped += 1
            log.exception("shadow sample of frame %d not sent", frame.seq)

    def _send(self, frame: Frame) -> None:
        ring = self.rings[ring_key(FRAMES, frame.camera)]
        view = ring.array(frame.frame_slot, (frame.height, frame.width, 3), np.uint8)
        image = view.copy()
        if not ring.holds(frame.frame_slot, frame.seq):
            raise RuntimeError("frame slot reused under the tap")  # cannot happen: we hold it
        dets, model = frame.detections, frame.model
        assert dets is not None and model is not None
        sample = ShadowSample(
            seq=frame.seq, camera_id=frame.camera or self.camera_id, width=frame.width,
            height=frame.height, live_variant=model.variant, boxes=dets.boxes, scores=dets.scores,
            class_ids=dets.class_ids, infer_s=self.infer_s, dropped=self.dropped,
        )  # fmt: skip
        header = pickle.dumps(sample, protocol=pickle.HIGHEST_PROTOCOL)
        self.sock.send_multipart((header, image), zmq.NOBLOCK, copy=False)
        self.infer_s = 0.0
        self.sent += 1

    def close(self) -> None:
        self.sock.close(0)


def open_tap(cfg: ShadowConfig, camera_id: str, rings: Mapping[str, SharedRing],
             ctx: zmq.Context, runtime_dir: Path) -> ShadowTap | None:  # fmt: skip
    """The tap when the monitor is on (None otherwise: the publish stage skips it)."""
    return ShadowTap(cfg, camera_id, rings, ctx, runtime_dir) if cfg.enabled else None
