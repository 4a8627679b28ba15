"""Frigate's zmq detector protocol: header checks, tensor to image, the (20, 6) reply."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edged.integrations.frigate.protocol import (
    EMPTY_REPLY,
    RESULT_ROWS,
    RequestError,
    encode_reply,
    parse_header,
    parse_request,
    to_image,
)
from edged.postprocess.decoders import Detections


def raw(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("shape", "layout", "size"),
    [([1, 240, 320, 3], "NHWC", (240, 320)), ([1, 3, 240, 320], "NCHW", (240, 320)),
     ([240, 320, 3], "NHWC", (240, 320))],
)  # fmt: skip
def test_header_layouts(shape: list[int], layout: str, size: tuple[int, int]):
    header = parse_header(raw(shape=shape, dtype="uint8", model_type="ssd"))
    assert (header.layout, (header.height, header.width)) == (layout, size)
    assert header.model_type == "ssd"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff", "not JSON"),
        (b"[]", "JSON object"),
        (raw(dtype="uint8"), "shape must be"),
        (raw(shape=[1, 2.5, 3, 3], dtype="uint8"), "shape must be"),
        (raw(shape=[1, True, 3, 3], dtype="uint8"), "shape must be"),
        (raw(shape=[2, 3, 3, 3], dtype="uint8"), "batch 1"),
        (raw(shape=[1, 5, 5, 4], dtype="uint8"), "3 channels"),
        (raw(shape=[1, 0, 5, 3], dtype="uint8"), "sides must be"),
        (raw(shape=[1, 5000, 5, 3], dtype="uint8"), "sides must be"),
        (raw(shape=[1, 5, 5, 3], dtype="int8"), "dtype 'int8'"),
        (raw(shape=[1, 5, 5, 3], dtype="uint8", model_type=[]), "model_type"),
        (b" " * 5000, "larger than"),
    ],
)
def test_bad_headers_say_why(data: bytes, reason: str):
    with pytest.raises(RequestError, match=reason):
        parse_header(data)


def test_request_needs_two_frames_of_the_right_size():
    good = raw(shape=[1, 2, 2, 3], dtype="float32")
    assert parse_request([good, bytes(48)])[1].shape == (1, 2, 2, 3)
    with pytest.raises(RequestError, match="2 message frames"):
        parse_request([good])
    with pytest.raises(RequestError, match="needs 48"):
        parse_request([good, bytes(47)])


def test_to_image_from_nchw_and_float_ranges():
    pixels = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(1, 2, 4, 3) * 10  # NHWC
    nhwc = parse_header(raw(shape=[1, 2, 4, 3], dtype="uint8"))
    nchw = parse_header(raw(shape=[1, 3, 2, 4], dtype="float32"))
    expected = pixels[0]
    assert np.array_equal(to_image(nhwc, pixels), expected)
    planar = pixels.transpose(0, 3, 1, 2).astype(np.float32)
    assert np.array_equal(to_image(nchw, planar, "0-255"), expected)
    assert np.array_equal(to_image(nchw, planar / 255, "0-1"), expected)
    wild = planar.copy()
    wild[0, 0, 0, :3] = [np.nan, -7, 1e9]
    assert to_image(nchw, wild)[0, :3, 0].tolist() == [0, 0, 255]


def test_reply_is_best_first_normalised_and_capped():
    n = RESULT_ROWS + 5
    scores = np.linspace(0.3, 0.9, n, dtype=np.float32)
    boxes = np.tile(np.array([[32, 24, 160, 120]], np.float32), (n, 1))
    boxes[0] = [-5, -5, 400, 300]  # beyond the picture: clipped
    class_ids = np.arange(n)
    reply = np.frombuffer(
        encode_reply(Detections(boxes, scores, class_ids), width=320, height=240), np.float32
    ).reshape(RESULT_ROWS, 6)
    assert reply[0, 0] == n - 1 and reply[0, 1] == pytest.approx(0.9)
    assert reply[0, 2:].tolist() == pytest.approx([0.1, 0.1, 0.5, 0.5])  # y1 x1 y2 x2
    assert list(reply[:, 1]) == sorted(reply[:, 1], reverse=True)
    assert 0 not in reply[:, 0]  # the lowest scores did not fit
    few = encode_reply(Detections(boxes[:1], scores[:1], class_ids[:1]), 320, 240)
    table = np.frombuffer(few, np.float32).reshape(RESULT_ROWS, 6)
    assert table[0].tolist() == pytest.approx([0, 0.3, 0, 0, 1, 1])
    assert not table[1:].any()
    assert encode_reply(Detections.empty(), 320, 240) == EMPTY_REPLY
