"""The stage protocol's wire encoding: every kind round-trips, anything else is refused with a
reason that names the kind or the field."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import get_args

import pytest

from edged.config import CameraConfig, SourceConfig
from edged.models import ResolvedVariant
from edged.pipeline.messages import (
    Cameras,
    Command,
    Drain,
    EndOfStream,
    Fatal,
    InferenceReady,
    MessageError,
    ModelDescriptor,
    ModelReloaded,
    PublishReady,
    Reclaim,
    SourceLost,
    StageEvent,
    Stop,
    SubscribersChanged,
    Swap,
    SwapDone,
    SwapFailed,
    TrackingOff,
    UseModel,
    decode_command,
    decode_event,
    encode,
)
from edged.pipeline.ring import RingSpec
from tests.stage_events import connected, published_frame, stats

MODEL = ModelDescriptor("m/fp32/0", "m", "fp32", "onnxruntime", "fp32", 640, 640, "NHWC",
                        "uint8", "yolov5", ("person",))  # fmt: skip
RESOLVED = ResolvedVariant("m", "fp32", "onnxruntime", Path("m.onnx"), "fp32", "auto", "auto")

EVENTS: list[StageEvent] = [
    InferenceReady(MODEL), PublishReady("tcp://127.0.0.1:5555"), Fatal("no model"),
    stats(published_frame(3, 10.0, MODEL.key, (0,), (0.5,), (("infer", 9.0, 9.5),))),
    connected(), SourceLost("gone"), EndOfStream(459), SubscribersChanged(2),
    SwapDone("r", MODEL, RESOLVED, 0.25, last_old_seq=41), SwapFailed("r", "bad file"),
    ModelReloaded(True, None, 1.5), TrackingOff("a", "tracking.lines.0.points: outside"),
]  # fmt: skip
COMMANDS: list[Command] = [Stop(), Drain(), Reclaim("frames"), Swap("r", RESOLVED),
                           UseModel(MODEL),
                           Cameras((CameraConfig(id="cam1", source=SourceConfig(uri="a.mp4")),),
                                   {"frames.cam1": RingSpec("edged_1_f1", 8, 64)})]  # fmt: skip


def test_the_samples_cover_every_kind() -> None:
    assert {type(e) for e in EVENTS} == set(get_args(StageEvent))
    assert {type(c) for c in COMMANDS} == set(get_args(Command))


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips(event: StageEvent) -> None:
    assert decode_event(encode(event)) == event


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_round_trips(command: Command) -> None:
    assert decode_command(encode(command)) == command


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(MessageError, match="unknown stage message kind 'Reboot'"):
        decode_command(pickle.dumps(("Reboot", {})))


def test_a_renamed_field_is_refused_naming_it() -> None:
    fields = {"request_id": "r", "model": MODEL, "resolved": RESOLVED, "duration": 0.1,
              "last_seq": 41}  # fmt: skip
    with pytest.raises(MessageError, match=r"SwapDone.*last_seq"):
        decode_event(pickle.dumps(("SwapDone", fields)))


def test_an_event_is_no_command_and_a_command_no_event() -> None:
    with pytest.raises(MessageError, match="Fatal is not a stage command"):
        decode_command(encode(Fatal("x")))
    with pytest.raises(MessageError, match="Stop is not a stage event"):
        decode_event(encode(Stop()))


def test_bytes_that_are_no_message_are_refused() -> None:
    with pytest.raises(MessageError, match="not a stage message"):
        decode_event(b"\x80\x05garbage")
    with pytest.raises(MessageError, match="not a stage message"):
        decode_event(pickle.dumps(["Fatal"]))  # not a (kind, fields) pair
    with pytest.raises(MessageError, match="unknown stage message kind"):
        decode_event(pickle.dumps((None, {})))


def test_only_protocol_types_are_encoded() -> None:
    with pytest.raises(MessageError, match="not a stage message"):
        encode(MODEL)  # type: ignore[arg-type]
