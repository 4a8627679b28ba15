"""Postprocess: decode raw outputs with the decoder of the model that produced them, then NMS;
then (``tracking.enabled``) track the detections: IDs, zone and line events (edged.tracking)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from edged.config import PostprocessConfig
from edged.pipeline.messages import POSTPROCESS, Fatal, Frame
from edged.pipeline.stage_runtime import OUTPUTS, StageRuntime
from edged.postprocess.decoders import DecodeParams, Detections, OutputLayout, decode
from edged.postprocess.raw_heads import RawHead
from edged.tracking.camera import CameraTrackers, FrameInfo
from edged.tracking.config import pixel_bounds_errors
from edged.tracking.result import TrackingResult

log = logging.getLogger(__name__)


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
        self.tracking_cfg = cfg.tracking
        # Per camera, IDs reserved in the runtime dir so a restarted stage never reuses one.
        self.trackers = (
            CameraTrackers(cfg.tracking, lambda cam: rt.setup.runtime_dir / f"track-ids.{cam}")
            if cfg.tracking.enabled
            else None
        )
        self.checked_size: dict[str, tuple[int, int]] = {}

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
        if self.trackers is None:
            return None
        assert frame.model is not None
        camera = self.camera_of(frame)
        if self.checked_size.get(camera) != (frame.width, frame.height):  # pixel zones vs frame
            self.checked_size[camera] = (frame.width, frame.height)
            errors = pixel_bounds_errors(self.tracking_cfg, frame.width, frame.height)
            if errors:
                self.rt.send_event(Fatal("; ".join(f"{p}: {r}" for p, r in errors)))
                self.trackers = None
                return None
        # The tracker's clock: a lossless file's own (media) time, else when the frame was read.
        t = frame.captured if frame.media_time is None else frame.media_time
        info = FrameInfo(frame.seq, frame.wall_time, t, frame.width, frame.height)
        return self.trackers[camera].update(detections, frame.model.labels, info)

    def process(self, frame: Frame) -> None:
        if frame.end_of_stream:
            if self.trackers is not None:  # every track ends with the stream (or the drain)
                frame = replace(frame, tracking=self.trackers[self.camera_of(frame)].finish())
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
        pass


def open_stage(rt: StageRuntime) -> PostprocessStage:
    return PostprocessStage(rt)
