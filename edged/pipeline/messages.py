"""Internal messages between the supervisor and the stage processes (frozen dataclasses).

They cross process boundaries pickled over private ``ipc://`` sockets in the runtime directory
(mode 0700), so only processes of the same user and code version ever read them. Frames and
tensors never travel here: only the slot numbers that locate them in shared memory.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

from edged.postprocess.decoders import Detections
from edged.preprocess import Letterbox

# Stage names double as metric labels; order is the pipeline order.
CAPTURE, PREPROCESS, INFER, POSTPROCESS, PUBLISH = (
    "capture",
    "preprocess",
    "infer",
    "postprocess",
    "publish",
)
STAGE_ORDER = (CAPTURE, PREPROCESS, INFER, POSTPROCESS, PUBLISH)


@dataclass(frozen=True)
class ModelDescriptor:
    """Identifies the model that produced a frame; travels with every frame after inference."""

    key: str  # unique per loaded instance: name/variant/generation
    name: str
    variant: str
    backend: str
    precision: str
    input_width: int
    input_height: int
    input_layout: str  # NCHW float or NHWC uint8
    input_dtype: str
    output_layout: str  # an OutputLayout value
    labels: tuple[str, ...]
    path: str = ""
    head: str = ""  # a raw_head layout's parameters (RawHead JSON)


@dataclass(frozen=True)
class ArrayRef:
    """An array stored in a ring slot at a byte offset."""

    offset: int
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Frame:
    """One frame's metadata as it moves down the pipeline; each stage adds its part."""

    seq: int
    wall_time: float  # time.time() at capture, for subscribers
    captured: float  # time.monotonic() when the frame was read (the end-to-end start)
    width: int
    height: int
    frame_slot: int
    timings: tuple[tuple[str, float, float], ...] = ()  # (stage, start, end), monotonic
    tensor_slot: int = -1
    tensor_layout: str = ""  # input layout + size the tensor was made for ("NCHW:640x640")
    letterbox: Letterbox | None = None
    model: ModelDescriptor | None = None
    output_slot: int = -1
    outputs: tuple[ArrayRef, ...] = ()
    detections: Detections | None = None
    end_of_stream: bool = False

    def timed(self, stage: str, start: float, end: float) -> tuple[tuple[str, float, float], ...]:
        return (*self.timings, (stage, start, end))


# How long a swap may take before the supervisor gives up waiting (and the inference stage lets
# a newer swap replace a load that is still stuck).
SWAP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class StageEvent:
    """Stage → supervisor: ``kind`` says what ``data`` holds."""

    stage: str
    # ready, stats (counters + published-frame records), source, swap_result, model_reload,
    # subscribers, fatal, eos
    kind: str
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    """Supervisor → stage."""

    kind: str  # swap, input_spec, stop
    data: dict = field(default_factory=dict)


def dumps(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> object:
    return pickle.loads(data)
