"""Publish: send each frame's detections over ZeroMQ PUB and report them to the supervisor
(in batches, with the stage's counters).

PUB never blocks: a subscriber that stops reading loses messages once its high-water mark is
reached, and the pipeline keeps its rate. With ``preview.enabled`` it also taps annotated JPEGs
off the frames it publishes (see :mod:`edged.pipeline.stages.preview_tap`) while someone
watches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from edged.monitor.tap import open_tap
from edged.pipeline.messages import (
    PUBLISH,
    EndOfStream,
    Fatal,
    Frame,
    PublishedFrame,
    PublishReady,
    SubscribersChanged,
)
from edged.pipeline.stage_runtime import FRAMES, StageRuntime, ring_key
from edged.preview.config import PreviewConfig
from edged.preview.subscriptions import SubscriptionTracker
from edged.publish.publisher import open_publisher
from edged.publish.schema import SCHEMA_VERSION, encode, topic_for
from edged.tracking.events import event_messages, events_topic_for
from edged.tracking.result import NO_TRACK, TrackingResult

log = logging.getLogger(__name__)


def build_message(frame: Frame, camera_id: str, now: float) -> dict[str, Any]:
    """The payload for a frame that went through postprocess."""
    model = frame.model
    dets = frame.detections
    assert model is not None and dets is not None
    latency = {stage: round((end - start) * 1000, 3) for stage, start, end in frame.timings}
    latency["end_to_end"] = round((now - frame.captured) * 1000, 3)
    labels = model.labels
    # float64 before rounding: a float32 575.9 would print as 575.9000244140625.
    boxes = dets.boxes.astype(np.float64).round(1).tolist()
    detections = [
        {"label": labels[c] if c < len(labels) else str(c), "class_id": c,
         "confidence": round(s, 4), "box": b}
        for c, s, b in zip(dets.class_ids.tolist(), dets.scores.tolist(), boxes, strict=True)
    ]  # fmt: skip
    if frame.tracking is not None:
        for det, track_id in zip(detections, frame.tracking.track_ids.tolist(), strict=True):
            det["track_id"] = track_id if track_id != NO_TRACK else None
    return {
        "schema_version": SCHEMA_VERSION,
        "camera_id": camera_id,
        "seq": frame.seq,
        "timestamp": frame.wall_time,
        "source": {"width": frame.width, "height": frame.height},
        "model": {"name": model.name, "variant": model.variant, "backend": model.backend,
                  "precision": model.precision},
        "latency_ms": latency,
        "detections": detections,
    }  # fmt: skip


class PublishStage:
    def __init__(self, rt: StageRuntime) -> None:
        self.rt = rt
        cfg = rt.setup.config
        self.camera_id = cfg.camera_id  # for frames without a camera id
        self.format = cfg.publish.format
        # Every camera publishes on its own topics.
        cameras = [c.id for c in rt.setup.cameras] or [cfg.camera_id]
        self.topics = {camera: self.topics_of(camera) for camera in cameras}
        # XPUB is PUB for subscribers, and also tells us when they (un)subscribe.
        self.publisher = open_publisher(rt.ctx, cfg.publish)
        self.pub = self.publisher.sock
        self.endpoint = self.publisher.endpoint
        # Only prefixes of the detections topics are kept.
        self.subs = SubscriptionTracker([t[0] for t in self.topics.values()])
        self.reported_subscribers = -1  # last count sent to the supervisor
        self.wait_for = cfg.publish.wait_for_subscribers
        self.wait_timeout = cfg.publish.wait_timeout_s
        # The shadow monitor's tap: a frame now and then to its helper, never waiting.
        self.shadow = open_tap(cfg.monitor.shadow, cfg.camera_id, rt.rings, rt.ctx,
                               rt.setup.runtime_dir)  # fmt: skip
        # The preview: a tap per camera (frames.<id>), all on one private socket (ours: taps
        # come and go with the cameras).
        self.previews: dict[str, Any] = {}
        self.private: zmq.Socket | None = None
        self.preview_cfg: PreviewConfig = getattr(cfg, "preview", None) or PreviewConfig()
        self._cameras = rt.cameras  # the runtime's view of the cameras (a reload replaces it)
        rt.cameras_gone.append(self._cameras_gone)  # told before their rings close
        if self.preview_cfg.enabled:
            self._open_previews()

    def _open_previews(self) -> None:
        from edged.pipeline.stages.preview_tap import open_private_socket  # cv2 only if enabled

        try:
            self.private = open_private_socket(self.rt.ctx, self.rt.setup.runtime_dir)
            for camera in self.topics:
                self._open_preview(camera)
        except (zmq.ZMQError, OSError) as exc:  # the preview never costs the detections
            log.error("live preview disabled: %s", exc)
            for camera in list(self.previews):
                self._close_preview(camera)
            if self.private is not None:
                self.private.close(0)
                self.private = None
            return
        for sock in (self.pub, self.private):
            self.rt.poller.register(sock, zmq.POLLIN)  # subscriptions wake the loop

    def _frames_ring(self, camera: str) -> Any:
        """The ring the camera's frames are in now (None: not attached)."""
        return self.rt.rings.get(ring_key(FRAMES, camera if self.rt.cameras else ""))

    def _open_preview(self, camera: str) -> None:
        from edged.pipeline.stages.preview_tap import PreviewTap
        from edged.preview.annotate import tracking_overlays

        rt, cfg = self.rt, self.rt.setup.config
        ring = rt.ring(FRAMES, camera if rt.cameras else "")
        tap = PreviewTap(self.preview_cfg, camera, ring, rt.ctx, rt.setup.runtime_dir, self.pub,
                         private=self.private)  # fmt: skip
        cam = rt.cameras.get(camera)
        tap.overlays = tracking_overlays(cfg.tracking if cam is None else cfg.tracking_for(cam))
        self.previews[camera] = tap
        rt.poller.register(tap.inbox, zmq.POLLIN)  # finished JPEGs wake the loop

    def _close_preview(self, camera: str) -> None:
        tap = self.previews.pop(camera, None)
        if tap is not None:
            self.rt.poller.unregister(tap.inbox)
            tap.close()

    def _cameras_gone(self, cameras: set[str]) -> None:
        """Cameras removed (or whose rings are replaced): their taps go before the rings do
        (:meth:`follow_cameras` opens a tap on a replaced ring)."""
        for camera in cameras:
            self._close_preview(camera)

    def follow_cameras(self) -> None:
        """A reload changed the cameras (the runtime's view was replaced): topics for the new
        set, and a preview tap on each camera's frames ring as it is now (a camera removed and
        added again has a new ring; the old tap would show its last picture for ever)."""
        cameras = self.rt.cameras
        if cameras is self._cameras:  # every frame: one comparison
            return
        self._cameras = cameras
        ids = list(cameras) or [self.camera_id]
        for camera in [c for c in self.topics if c not in ids]:
            del self.topics[camera]
            self._close_preview(camera)
        for camera in ids:
            if camera not in self.topics:
                self.topics[camera] = self.topics_of(camera)
        self.subs.topics = tuple(t[0] for t in self.topics.values())
        if self.private is None:
            return
        for camera in ids:
            tap = self.previews.get(camera)
            if tap is not None and tap.ring is self._frames_ring(camera):
                continue
            self._close_preview(camera)
            try:
                self._open_preview(camera)
            except (zmq.ZMQError, OSError, KeyError) as exc:
                log.error("no live preview of camera %s: %s", camera, exc)

    @property
    def preview(self) -> Any:
        """The first camera's tap (None without the preview)."""
        return next(iter(self.previews.values()), None)

    @staticmethod
    def topics_of(camera: str) -> tuple[bytes, bytes]:
        """(detections, events) topics of ``camera``."""
        return topic_for(camera), events_topic_for(camera)

    def camera_of(self, frame: Frame) -> str:
        return frame.camera or self.camera_id

    @property
    def subscribers(self) -> int:
        """Subscriptions that receive detections (a frames.* viewer does not count): of the
        camera with the most (``detections.`` counts for every camera, once)."""
        return max((self.subs.matching(t[0]) for t in self.topics.values()), default=0)

    def _private_subscriptions(self) -> None:
        """The HTTP server's (un)subscriptions on the private socket, to every camera's tap."""
        while self.private is not None and self.private.poll(0, zmq.POLLIN):
            event = self.private.recv()
            for tap in self.previews.values():
                tap.private_event(event)

    def track_subscriptions(self, timeout_ms: int = 0) -> None:
        while self.pub.poll(timeout_ms, zmq.POLLIN):
            event = self.pub.recv()
            self.subs.feed(event)
            for tap in self.previews.values():
                tap.public_event(event)
            timeout_ms = 0
        if self.subscribers != self.reported_subscribers:  # rare: only when someone (un)subscribes
            self.reported_subscribers = self.subscribers
            self.rt.send_event(SubscribersChanged(self.subscribers))

    def service(self) -> None:
        """Every loop turn, frames or not: subscriptions, and finished preview JPEGs."""
        self.follow_cameras()
        if self.private is not None:
            self.track_subscriptions()
            self._private_subscriptions()
            for tap in self.previews.values():
                tap.service()

    def wait_for_subscribers(self) -> None:
        """Hold the first message until enough subscribers joined (or the timeout passed)."""
        if self.wait_for <= 0:
            return
        deadline = time.monotonic() + self.wait_timeout
        while self.subscribers < self.wait_for and time.monotonic() < deadline:
            self.track_subscriptions(100)
            # Still answer the supervisor (for postprocess too, in the same process).
            self.rt.handle_commands()
            self.rt.maybe_flush_stats()
            if self.rt.stopping:
                break
        if self.subscribers < self.wait_for:
            log.warning("only %d of %d subscribers joined; publishing anyway",
                        self.subscribers, self.wait_for)  # fmt: skip
        self.wait_for = 0

    def publish_events(self, frame: Frame, tracking: TrackingResult) -> None:
        """A frame's track events, after its detections (same seq, in order)."""
        camera = self.camera_of(frame)
        topic = self.topics.get(camera) or self.topics_of(camera)
        for message in event_messages(tracking.events, camera, frame.seq, frame.wall_time):
            self.pub.send_multipart((topic[1], encode(message, self.format)))

    def process(self, frame: Frame) -> None:
        if frame.end_of_stream:
            ended = frame.tracking
            if ended is not None:  # the tracks ended with the stream
                self.publish_events(frame, ended)
            self.rt.flush_stats()  # every frame's record reaches the supervisor before the end
            self.rt.send_event(EndOfStream(
                frame.seq, None if ended is None else ended.summary(with_time=False),
                self.camera_of(frame)))  # fmt: skip
            return
        self.follow_cameras()
        self.wait_for_subscribers()
        self.track_subscriptions()
        start = time.monotonic()
        camera = self.camera_of(frame)
        # A frame still in flight of a camera a reload removed: its topic, not remembered.
        topic = self.topics.get(camera) or self.topics_of(camera)
        message = build_message(frame, camera, start)
        payload = encode(message, self.format)
        self.pub.send_multipart((topic[0], payload), copy=False)
        if frame.tracking is not None:
            self.publish_events(frame, frame.tracking)
        tap = self.previews.get(camera)
        if tap is not None:
            tap.offer(frame, message, start)  # before the slot goes back
        if self.shadow is not None and camera in self.topics:
            self.shadow.offer(frame)  # before the slot goes back (a removed camera's is gone)
        self.rt.release(frame, FRAMES)
        end = time.monotonic()
        dets = frame.detections
        model = frame.model
        assert dets is not None and model is not None
        self.rt.count("ok")  # before the record, which may flush: both in one report
        self.rt.record(PublishedFrame(
            seq=frame.seq,
            captured=frame.captured,
            published=end,
            timings=frame.timed(PUBLISH, start, end),
            model_key=model.key,
            class_ids=tuple(dets.class_ids.tolist()),
            scores=tuple(dets.scores.tolist()),
            bytes=len(payload),
            tracking=None if frame.tracking is None else frame.tracking.summary(),
            camera=camera,
        ))  # fmt: skip

    def serve(self, after_frames: Callable[[], None] | None = None) -> None:
        # Lossless here even in live mode: detections are cheap to send and skipping a
        # finished frame would only waste the work done upstream.
        self.rt.serve(self.process, latest_only=False, after_frames=after_frames)

    def close(self) -> None:
        self.rt.cameras_gone.remove(self._cameras_gone)
        for tap in self.previews.values():
            tap.close()
        if self.private is not None:  # after the taps that send on it
            self.private.close(0)
        if self.shadow is not None:
            self.shadow.close()
        self.publisher.close()


def open_stage(rt: StageRuntime) -> PublishStage | None:
    try:
        stage = PublishStage(rt)
    except (zmq.ZMQError, OSError, ValueError) as exc:  # the address, or CURVE key files
        rt.send_event(Fatal(f"cannot bind publish endpoint: {exc}"))
        return None
    rt.send_event(PublishReady(stage.endpoint))
    return stage
