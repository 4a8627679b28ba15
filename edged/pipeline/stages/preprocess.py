"""Preprocess: letterbox each frame into the active model's input tensor, in shared memory.

The frame is read in place from the frame ring and the tensor written in place into the tensor
ring (:class:`edged.preprocess.TensorWriter`: resize, split, scale in one pass over the picture;
each slot's padding written once). OpenCV runs single-threaded here: a 720p resize takes ~0.3 ms,
and a second OpenCV thread would only compete with ONNX Runtime's threads for the same cores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from edged.pipeline.messages import PREPROCESS, Command, Frame, ModelDescriptor, UseModel
from edged.pipeline.stage_runtime import FRAMES, TENSORS, StageRuntime
from edged.preprocess import TensorWriter

log = logging.getLogger(__name__)


class PreprocessStage:
    def __init__(self, rt: StageRuntime, model: ModelDescriptor) -> None:
        self.rt = rt
        self.model = model
        self.frames = rt.ring(FRAMES, rt.camera)  # this camera's rings
        self.tensors = rt.ring(TENSORS, rt.camera)
        self.writer = TensorWriter(model.input_layout)
        rt.command_handler = self.on_command

    def on_command(self, command: Command) -> None:
        if isinstance(command, UseModel):
            self.model = command.model
            self.writer = TensorWriter(self.model.input_layout)  # pads every slot afresh
            log.info("input tensor now %s for %s", self.model.tensor_tag, self.model.key)

    def process(self, frame: Frame) -> None:
        slot = self.rt.slot_for(frame)
        if slot is None:
            return
        start = time.monotonic()
        model = self.model
        image = self.frames.array(frame.frame_slot, (frame.height, frame.width, 3), np.uint8)
        out = self.tensors.array(slot, model.tensor_spec.shape, model.input_dtype)
        try:
            box = self.writer.write(image, out, key=slot)
        except Exception:
            self.rt.allocator.reclaim_slot(slot)  # the frame is dropped by the stage loop
            raise
        if not self.frames.holds(frame.frame_slot, frame.seq):
            # The frame slot was reused while we read it (only after a restart): discard.
            self.rt.allocator.reclaim_slot(slot)
            self.rt.drop(frame, "error")
            return
        self.tensors.mark(slot, frame.seq)
        end = time.monotonic()
        if self.rt.send_frame(
            replace(
                frame,
                tensor_slot=slot,
                tensor_layout=model.tensor_tag,
                letterbox=box,
                timings=frame.timed(PREPROCESS, start, end),
            )
        ):
            self.rt.count("ok")

    def serve(self, after_frames: Callable[[], None] | None = None) -> None:
        self.rt.serve(self.process, latest_only=True, after_frames=after_frames)

    def close(self) -> None:
        pass


def open_stage(rt: StageRuntime) -> PreprocessStage:
    import cv2

    cv2.setNumThreads(1)
    assert rt.setup.model is not None
    return PreprocessStage(rt, rt.setup.model)
