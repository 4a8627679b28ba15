"""Postprocess: decode raw outputs with the decoder of the model that produced them, then NMS;
then (``tracking.enabled``) track the detections: IDs, zone and line events (edged.tracking)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from edged.config import PostprocessConfig
from edged.pipeline.messages import POSTPROCESS, Frame, TrackingOff
from edged.pipeline.stage_runtime import OUTPUTS, StageRuntime
from edged.postprocess.decoders import DecodeParams, Detections, OutputLayout, decode
from edged.postprocess.raw_heads import RawHead
from edged.tracking.camera import CameraTracker, CameraTrackers, FrameInfo
from edged.tracking.config import TrackingConfig, pixel_bounds_errors
from edged.tracking.result import TrackingResult

log = logging.getLogger(__name__)

TrackingKey = tuple[TrackingConfig, int, int]  # a camera's section and its frames' size


def decode_params(cfg: PostprocessConfig, conf_threshold: float | None = None) -> DecodeParams:
    """The decoder's settings; ``conf_threshold``: a camera's own, over the section's."""
    return DecodeParams(
        conf_threshold=cfg.conf_threshold if conf_threshold is None else conf_threshold,
        iou_threshold=cfg.iou_threshold,
        max_detections=cfg.max_detections,
        classes=tuple(cfg.classes) if cfg.classes is not None else None,
        agnostic=cfg.agnostic_nms,
    )


class PostprocessStage:
    def __init__(self, rt: StageRuntime) -> None:
        self.rt = rt
        self.outputs = rt.rings[OUTPUTS]
        self.params = decode_params(rt.setup.config.postprocess)
        cfg = rt.setup.config
        self.camera_id = cfg.camera_id  # for frames without a camera id
        # Per camera (each with its tracking section and frame size), IDs reserved in the
        # runtime dir so a restarted stage never reuses one. A camera whose zones do not fit its
        # frames: None (tracking off for it alone).
        self._trackers: dict[str, tuple[TrackingKey, CameraTracker | None]] = {}
        rt.cameras_gone.append(self.forget)

    def forget(self, cameras: set[str]) -> None:
        """Cameras a reload removed (or whose rings it replaced): their trackers go (a camera
        added again starts afresh, its IDs still never reused)."""
        for camera in cameras:
            self._trackers.pop(camera, None)

    def tracking_of(self, camera: str) -> TrackingConfig:
        """The camera's own tracking section, else the top-level one."""
        cam = self.rt.cameras.get(camera)
        config = self.rt.setup.config
        return config.tracking if cam is None else config.tracking_for(cam)

    def tracker_of(self, frame: Frame) -> CameraTracker | None:
        """The frame's camera's tracker (made on its first frame, afresh when a reload changed
        its tracking section or its frames' size); None when tracking is off for it."""
        camera = self.camera_of(frame)
        cfg = self.tracking_of(camera)
        key = (cfg, frame.width, frame.height)
        known = self._trackers.get(camera)
        if known is not None and known[0] == key:
            return known[1]
        tracker, reason = None, ""
        if cfg.enabled:
            # Pixel zones and lines against the real frame (the config could not know its size).
            errors = pixel_bounds_errors(cfg, frame.width, frame.height)
            if errors:  # that camera alone goes without tracking, never the whole daemon
                reason = "; ".join(f"{p}: {r}" for p, r in errors)
                log.error("tracking off for camera %s: %s", camera, reason)
            else:
                id_file = self.rt.setup.runtime_dir / f"track-ids.{camera}"
                tracker = CameraTrackers(cfg, lambda _cam: id_file)[camera]
        was_off = known is not None and known[0][0].enabled and known[1] is None
        if reason or was_off:  # the supervisor shows it (status, /readyz) until it is on again
            self.rt.send_event(TrackingOff(camera, reason))
        self._trackers[camera] = (key, tracker)
        return tracker

    def camera_of(self, frame: Frame) -> str:
        return frame.camera or self.camera_id

    def params_for(self, camera: str) -> DecodeParams:
        """The camera's conf_threshold when it has one (cameras change with a reload)."""
        cam = self.rt.cameras.get(camera)
        if cam is None or cam.conf_threshold is None:
            return self.params
        return decode_params(self.rt.setup.config.postprocess, cam.conf_threshold)

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def head_of(text: str) -> RawHead | None:
        """The parsed head parameters of a model (parsed once per model, not per frame)."""
        return RawHead.from_json(text) if text else None

    def track(self, frame: Frame, detections: Detections) -> TrackingResult | None:
        tracker = self.tracker_of(frame)
        if tracker is None:
            return None
        assert frame.model is not None
        # The tracker's clock: a lossless file's own (media) time, else when the frame was read.
        t = frame.captured if frame.media_time is None else frame.media_time
        info = FrameInfo(frame.seq, frame.wall_time, t, frame.width, frame.height)
        return tracker.update(detections, frame.model.labels, info)

    def process(self, frame: Frame) -> None:
        if frame.end_of_stream:
            known = self._trackers.get(self.camera_of(frame))
            if known is not None and known[1] is not None:  # every track ends with the stream
                frame = replace(frame, tracking=known[1].finish())
            self.rt.send_frame(frame)
            return
        start = time.monotonic()
        model = frame.model
        assert model is not None and frame.letterbox is not None
        arrays = [
            self.outputs.array(frame.output_slot, ref.shape, ref.dtype, ref.offset)
            for ref in frame.outputs
        ]
        detections = decode(
            arrays,
            OutputLayout(model.output_layout),
            self.params_for(self.camera_of(frame)),
            (model.input_width, model.input_height),
            frame.letterbox,
            self.head_of(model.head),
        )
        tracking = self.track(frame, detections)
        end = time.monotonic()
        sent = self.rt.send_frame(
            replace(
                frame,
                output_slot=-1,
                outputs=(),
                detections=detections,
                tracking=tracking,
                timings=frame.timed(POSTPROCESS, start, end),
            )
        )
        # Detections are copies; the output slot goes back to the inference stage, after the
        # frame is on its way (the release is not on the frame's critical path).
        self.rt.release(frame, OUTPUTS)
        if sent:
            self.rt.count("ok")

    def serve(self, after_frames: Callable[[], None] | None = None) -> None:
        # Lossless even in live mode: decoding is cheap next to inference, and skipping a
        # frame here would throw away an inference already paid for.
        self.rt.serve(self.process, latest_only=False, after_frames=after_frames)

    def close(self) -> None:
        self.rt.cameras_gone.remove(self.forget)


def open_stage(rt: StageRuntime) -> PostprocessStage:
    return PostprocessStage(rt)
