"""The publish stage's side of the preview: pick frames, copy them small, ship the JPEGs.

Cost on the detection path, per frame: one clock read and a comparison. Only while someone
watches (a subscriber to ``frames.<camera_id>`` on either publisher), at most ``preview.fps``
times a second and only when the encoder is idle, the frame is resized straight out of its
shared-memory slot into a private copy before the slot is released; drawing and JPEG encoding
happen on the encoder thread.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq

from edged.pipeline.messages import Frame
from edged.pipeline.ring import SharedRing
from edged.preview.annotate import Overlay, preview_size
from edged.preview.config import PreviewConfig
from edged.preview.encoder import Job, PreviewEncoder, RateMeter
from edged.preview.subscriptions import SubscriptionTracker, configure_xpub
from edged.preview.wire import frames_topic, private_endpoint

log = logging.getLogger(__name__)

RESEND_INTERVAL_S = 1.0


def open_private_socket(ctx: zmq.Context, runtime_dir: Path) -> zmq.Socket:
    """The socket the supervisor's HTTP server reads JPEGs from. A tiny high-water mark: a
    viewer that falls behind gets the newest frames, not a backlog."""
    private = ctx.socket(zmq.XPUB)
    configure_xpub(private)
    private.setsockopt(zmq.SNDHWM, 2)
    private.setsockopt(zmq.LINGER, 0)
    private.bind(private_endpoint(runtime_dir))
    return private


class PreviewTap:
    def __init__(
        self,
        cfg: PreviewConfig,
        camera_id: str,
        ring: SharedRing,
        ctx: zmq.Context,
        runtime_dir: Path,
        public: zmq.Socket | None,
        clock: Callable[[], float] = time.monotonic,
        private: zmq.Socket | None = None,
    ) -> None:
        """``private``: another camera's tap's private socket, shared (one endpoint serves
        every camera's ``frames.<id>``; its owner reads the subscriptions for all, see
        :attr:`siblings`)."""
        # No OpenCV worker pool in the publish process: its threads would compete with
        # inference for the cores; one resize is 0.2-0.5 ms on a single thread anyway.
        cv2.setNumThreads(1)
        self._clock = clock  # paces resends; a test passes its own
        self.cfg = cfg
        self.topic = frames_topic(camera_id)
        self.ring = ring
        self.public = public if cfg.publish_topic else None
        self.public_subs = SubscriptionTracker((self.topic,))
        self.private_subs = SubscriptionTracker((self.topic,))
        self._owns_private = private is None
        self.private = open_private_socket(ctx, runtime_dir) if private is None else private
        self.siblings: list[PreviewTap] = [self]  # the taps sharing the private socket
        inbox = f"inproc://edged-preview-{uuid.uuid4().hex}"
        self.inbox = ctx.socket(zmq.PULL)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox.bind(inbox)
        self.encoder = PreviewEncoder(ctx, inbox, cfg.jpeg_quality)
        self.encoder.start()
        self.interval = 1.0 / cfg.fps
        self.next_due = 0.0
        self.rate = RateMeter()
        self.last: tuple[bytes, bytes] | None = None  # (header, jpeg) sent last
        # Sockets owed the last picture (a new viewer), and when each last got one resent.
        self._resend_owed: set[zmq.Socket] = set()
        self._resent_at: dict[zmq.Socket, float] = {}
        self.sent = 0
        self.failures = 0
        self.overlays: tuple[Overlay, ...] = ()  # tracking zones and lines (set by publish)

    @property
    def sockets(self) -> tuple[zmq.Socket, ...]:
        """Sockets whose input the publish loop must service (register them with its poller)."""
        return (self.private, self.inbox) if self._owns_private else (self.inbox,)

    @property
    def watched(self) -> bool:
        if self.private_subs.matching(self.topic):
            return True
        return self.public is not None and self.public_subs.matching(self.topic) > 0

    # -- the detection path ----------------------------------------------------------------------

    def offer(self, frame: Frame, message: dict[str, Any], now: float) -> None:
        """Called for every published frame while it still holds its frame slot."""
        self.rate.tick(now)
        if now < self.next_due or not self.watched or self.encoder.busy:
            return
        # Keep the long-run rate at preview.fps, but never bank time while nobody watched.
        self.next_due = max(self.next_due + self.interval, now)
        try:
            image = self.snapshot(frame)
        except Exception:  # a preview problem must never fail the frame's publishing
            self.failures += 1
            if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
                log.exception("preview snapshot of frame %d failed (%d so far)", frame.seq,
                              self.failures)  # fmt: skip
            return
        if image is not None:
            self.encoder.submit(Job(image, message, self.rate.rate(now), self.overlays))

    def snapshot(self, frame: Frame) -> np.ndarray | None:
        """A private copy of the frame at preview size, read straight from its slot."""
        view = self.ring.array(frame.frame_slot, (frame.height, frame.width, 3), np.uint8)
        w, h = preview_size(frame.width, frame.height, self.cfg.width)
        if (w, h) == (frame.width, frame.height):
            image = view.copy()
        else:
            # Bilinear: 0.2-0.5 ms from 768p-1080p to 640 wide (INTER_AREA: up to 2.4 ms, on the
            # detection path). Slight aliasing is fine for aiming a camera.
            image = cv2.resize(view, (w, h), interpolation=cv2.INTER_LINEAR)
        if not self.ring.holds(frame.frame_slot, frame.seq):
            return None  # cannot happen while we hold the slot; never show a torn frame
        return image

    # -- housekeeping (every loop turn) ----------------------------------------------------------

    def public_event(self, event: bytes) -> None:
        """A subscription event the publish stage read from the public XPUB."""
        change, prefix = self.public_subs.feed(event)
        if change > 0 and self.public is not None and self.topic.startswith(prefix):
            self._resend(self.public)

    def service(self) -> None:
        """Track private subscriptions, send what the encoder finished."""
        while self._owns_private and self.private.poll(0, zmq.POLLIN):
            event = self.private.recv()
            for tap in self.siblings:
                tap.private_event(event)
        while self.inbox.poll(0, zmq.POLLIN):
            header, jpeg = self.inbox.recv_multipart()
            self.last = (header, jpeg)
            self._send(self.private, header, jpeg)
            if self.public is not None:
                self._send(self.public, header, jpeg)
            self._resend_owed.clear()  # every viewer just got a fresh picture
            self.sent += 1
        self._pay_resends()

    def private_event(self, event: bytes) -> None:
        """A subscription event of the private socket (read by its owner)."""
        change, prefix = self.private_subs.feed(event)
        if change > 0 and self.topic.startswith(prefix):
            self._resend(self.private)

    def _resend(self, sock: zmq.Socket) -> None:
        # A new viewer sees the last picture at once, even when the source has ended.
        self._resend_owed.add(sock)
        self._pay_resends()

    def _pay_resends(self) -> None:
        # At most one resend per socket and RESEND_INTERVAL_S: a PUB sends to every viewer, so
        # a peer subscribing in a loop would otherwise make the tap send JPEGs as fast as it
        # subscribes, to everyone. A viewer owed one gets it at the latest after the interval.
        now = self._clock()
        for sock in list(self._resend_owed):
            if self.last is None:
                self._resend_owed.discard(sock)
            elif now - self._resent_at.get(sock, -RESEND_INTERVAL_S) >= RESEND_INTERVAL_S:
                self._send(sock, *self.last)
                self._resent_at[sock] = now
                self._resend_owed.discard(sock)

    def _send(self, sock: zmq.Socket, header: bytes, jpeg: bytes) -> None:
        # PUB semantics: a slow viewer loses frames, the pipeline never waits.
        with contextlib.suppress(zmq.Again):
            sock.send_multipart((self.topic, header, jpeg), zmq.NOBLOCK)

    def close(self) -> None:
        self.encoder.stop()
        if self._owns_private:
            self.private.close(0)
        self.inbox.close(0)
