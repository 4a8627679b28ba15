"""One Frigate request through edged's model: letterbox, infer, decode (the camera path's parts)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edged.backends import Backend
from edged.integrations.config import DetectorConfig
from edged.integrations.frigate.protocol import TensorHeader, to_image
from edged.pipeline.messages import ModelDescriptor
from edged.pipeline.stages.postprocess import PostprocessStage
from edged.postprocess.decoders import DecodeParams, Detections, OutputLayout, decode
from edged.preprocess import TensorWriter


@dataclass(frozen=True)
class StageTimes:
    """Seconds spent in each step of one request, for edged_stage_latency_seconds."""

    preprocess: float
    infer: float
    postprocess: float


class Engine:
    """A loaded model and what it takes to answer a request with it."""

    def __init__(self, backend: Backend, model: ModelDescriptor, params: DecodeParams,
                 detector: DetectorConfig) -> None:  # fmt: skip
        self.backend = backend
        self.model = model
        self.params = params
        self.float_range = detector.float_range
        # The writer converts BGR to the model's RGB; an RGB tensor from Frigate goes as it is.
        self.writer = TensorWriter(model.input_layout, swap_rb=detector.pixel_format == "bgr")
        self.input = np.zeros(backend.input.shape, dtype=backend.input.dtype)

    def detect(self, header: TensorHeader, tensor: np.ndarray) -> tuple[Detections, StageTimes]:
        """Detections in the request tensor's pixels (letterboxed into the model input and back)."""
        t0 = time.monotonic()
        image = to_image(header, tensor, self.float_range)
        letterbox = self.writer.write(image, self.input, key=0)
        t1 = time.monotonic()
        outputs = self.backend.infer(self.input)
        t2 = time.monotonic()
        detections = decode(
            outputs,
            OutputLayout(self.model.output_layout),
            self.params,
            (self.model.input_width, self.model.input_height),
            letterbox,
            PostprocessStage.head_of(self.model.head),  # parsed once per model,
        )
        return detections, StageTimes(t1 - t0, t2 - t1, time.monotonic() - t2)

    def close(self) -> None:
        self.backend.close()
