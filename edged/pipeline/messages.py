"""Internal messages between the supervisor and the stage processes (frozen dataclasses).

They cross process boundaries pickled over private ``ipc://`` sockets in the runtime directory
(mode 0700), so only processes of the same user and code version ever read them. Frames and
tensors never travel here: only the slot numbers that locate them in shared memory.

Events (stage → supervisor) and commands (supervisor → stage) are one dataclass per kind,
handled by type: a field renamed on one side fails where it is read, not as a silent default.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import get_args

from edged.backends.base import TensorSpec
from edged.config import CameraConfig
from edged.models import ResolvedVariant
from edged.pipeline.ring import RingSpec

# The stage names, for the modules that import them from here.
from edged.pipeline.stage_names import CAPTURE as CAPTURE
from edged.pipeline.stage_names import INFER as INFER
from edged.pipeline.stage_names import POSTPROCESS as POSTPROCESS
from edged.pipeline.stage_names import PREPROCESS as PREPROCESS
from edged.pipeline.stage_names import PUBLISH as PUBLISH
from edged.pipeline.stage_names import STAGE_ORDER as STAGE_ORDER
from edged.postprocess.decoders import Detections
from edged.preprocess import Letterbox
from edged.tracking.result import TrackingResult, TrackingSummary


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

    @property
    def tensor_spec(self) -> TensorSpec:
        """The input tensor preprocess writes into the tensor ring for this model."""
        return TensorSpec("input", self.input_width, self.input_height, self.input_layout,
                          self.input_dtype)  # fmt: skip

    @property
    def tensor_tag(self) -> str:
        """Identifies a tensor format; the inference stage re-checks it against the active model."""
        return f"{self.input_layout}:{self.input_width}x{self.input_height}:{self.input_dtype}"


@dataclass(frozen=True)
class ArrayRef:
    """An array stored in a ring slot at a byte offset."""

    offset: int
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Frame:
    """One frame's metadata as it moves down the pipeline; each stage adds its part."""

    seq: int  # per camera
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
    tracking: TrackingResult | None = None  # track IDs and events (tracking.enabled)
    # A file read lossless: seq / fps, the file's own clock (read times there follow the
    # pipeline's pace, in bursts); the tracker's time. None: use ``captured``.
    media_time: float | None = None
    camera: str = ""  # the camera id: its rings, topics and metric label ("" : not set)

    def timed(self, stage: str, start: float, end: float) -> tuple[tuple[str, float, float], ...]:
        return (*self.timings, (stage, start, end))


# How long a swap may take before the supervisor gives up waiting (and the inference stage lets
# a newer swap replace a load that is still stuck).
SWAP_TIMEOUT_S = 300.0


# -- stage → supervisor ------------------------------------------------------------------------
# The sending stage is the DEALER socket's identity (the stage name), not part of the message.


@dataclass(frozen=True)
class InferenceReady:
    """The inference stage loaded its model (at start, and after every restart)."""

    model: ModelDescriptor


@dataclass(frozen=True)
class PublishReady:
    """The publish stage bound its socket."""

    endpoint: str


@dataclass(frozen=True)
class Fatal:
    """The stage cannot run (bad model, missing file in a batch run): the daemon stops."""

    error: str
    bad_model: bool = False  # the model file itself is bad: restarting will not help


@dataclass(frozen=True)
class PublishedFrame:
    """One published frame, as the metrics and /readyz need it."""

    seq: int
    captured: float  # monotonic
    published: float  # monotonic, when it went out
    timings: tuple[tuple[str, float, float], ...]
    model_key: str
    class_ids: tuple[int, ...]
    scores: tuple[float, ...]
    bytes: int
    tracking: TrackingSummary | None = None  # tracking.enabled: for the tracking metrics
    camera: str = ""


@dataclass(frozen=True)
class Stats:
    """A stage's counters since its last report (and, from publish, the frames it published)."""

    counts: dict[str, int]
    queue_depth: int
    records: tuple[PublishedFrame, ...] = ()
    camera_counts: dict[str, dict[str, int]] | None = None  # the same outcomes, per camera


@dataclass(frozen=True)
class SourceConnected:
    width: int
    height: int
    fps: float
    kind: str
    uri: str
    paced_by: str  # "source" (camera, stream) or "edged" (a paced file, the test pattern)
    reconnect: bool  # after a failure, not the first open


@dataclass(frozen=True)
class SourceLost:
    error: str


@dataclass(frozen=True)
class EndOfStream:
    """The source ended (from capture), or its end marker was published (from publish)."""

    frames: int  # frames captured before the end
    tracking: TrackingSummary | None = None  # from publish: every track ended with the stream
    camera: str = ""  # from publish: whose stream ended (capture: its instance says)


@dataclass(frozen=True)
class TrackingOff:
    """From postprocess: a camera's tracking zones or lines do not fit its frames, so its
    tracking is off (that camera only; its detections still flow). ``reason`` "": on again."""

    camera: str
    reason: str


@dataclass(frozen=True)
class SubscribersChanged:
    count: int  # subscriptions that receive detections


@dataclass(frozen=True)
class SwapDone:
    request_id: str
    model: ModelDescriptor
    resolved: ResolvedVariant
    duration: float
    last_old_seq: int  # the last frame the old model inferred; -1 when none
    last_old_camera: str = ""  # that frame's camera (seqs count per camera)


@dataclass(frozen=True)
class SwapFailed:
    request_id: str
    error: str


@dataclass(frozen=True)
class ModelReloaded:
    """The active model loaded again after its backend broke (no swap)."""

    ok: bool
    error: str | None
    duration: float


StageEvent = (
    InferenceReady | PublishReady | Fatal | Stats | SourceConnected | SourceLost | EndOfStream
    | SubscribersChanged | SwapDone | SwapFailed | ModelReloaded | TrackingOff
)  # fmt: skip


# -- supervisor → stage ------------------------------------------------------------------------


@dataclass(frozen=True)
class Stop:
    """Exit now."""


@dataclass(frozen=True)
class Drain:
    """Like SIGTERM: capture ends the stream so frames in flight are still published."""


@dataclass(frozen=True)
class Reclaim:
    """A stage that held slots of this stage's ring restarted: take them all back."""

    ring: str


@dataclass(frozen=True)
class Cameras:
    """To the shared stages, after a reload changed the cameras: every camera now configured
    and every camera's rings (attach the new, let go of the removed)."""

    cameras: tuple[CameraConfig, ...]
    rings: dict[str, RingSpec]


@dataclass(frozen=True)
class Swap:
    """To inference: load ``resolved`` beside the serving model and switch when it is ready."""

    request_id: str
    resolved: ResolvedVariant


@dataclass(frozen=True)
class UseModel:
    """To preprocess: make tensors for ``model`` (inference serves it now)."""

    model: ModelDescriptor


Command = Stop | Drain | Reclaim | Swap | UseModel | Cameras

_EVENTS: tuple[type, ...] = get_args(StageEvent)
_COMMANDS: tuple[type, ...] = get_args(Command)
_TYPES: dict[str, type] = {t.__name__: t for t in (*_EVENTS, *_COMMANDS)}


class MessageError(ValueError):
    """Bytes that are no stage message of this version (unknown kind, wrong fields)."""


def encode(message: StageEvent | Command) -> bytes:
    """The message's type name and its fields by name, so a field renamed on one side fails
    loudly on the other instead of arriving under the old name."""
    name = type(message).__name__
    if _TYPES.get(name) is not type(message):
        raise MessageError(f"{name} is not a stage message")
    return pickle.dumps((name, vars(message)), protocol=pickle.HIGHEST_PROTOCOL)


def decode_event(data: bytes) -> StageEvent:
    """A stage's event; MessageError for anything else."""
    return _decode(data, _EVENTS, "event")  # type: ignore[return-value]


def decode_command(data: bytes) -> Command:
    """A supervisor's command; MessageError for anything else."""
    return _decode(data, _COMMANDS, "command")  # type: ignore[return-value]


def _decode(data: bytes, kinds: tuple[type, ...], what: str) -> object:
    try:
        name, fields = pickle.loads(data)
    except Exception as exc:  # truncated, or not the (name, fields) pair
        raise MessageError(f"not a stage message: {type(exc).__name__}: {exc}") from None
    cls = _TYPES.get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(fields, dict):
        raise MessageError(f"unknown stage message kind {name!r}")
    if cls not in kinds:
        raise MessageError(f"{name} is not a stage {what}")
    try:
        return cls(**fields)
    except TypeError as exc:  # a field missing or unknown: the message names it
        raise MessageError(f"{name}: {exc}") from None


def dumps(frame: Frame) -> bytes:
    return pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Frame:
    frame = pickle.loads(data)
    if not isinstance(frame, Frame):
        raise MessageError(f"expected a Frame, got {type(frame).__name__}")
    return frame
