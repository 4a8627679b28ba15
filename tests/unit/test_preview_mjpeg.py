"""MJPEG framing: what edged writes, read back by the strict reader tests and viewers use."""

from __future__ import annotations

import io

import pytest

from edged.preview import mjpeg


def test_parts_round_trip():
    frames = [b"\xff\xd8first\xff\xd9", b"\xff\xd8" + bytes(range(256)) * 10 + b"\xff\xd9"]
    body = mjpeg.opening() + b"".join(mjpeg.part(f, seq=i) for i, f in enumerate(frames))
    parts = list(mjpeg.read_parts(io.BytesIO(body)))
    assert [p[1] for p in parts] == frames
    for i, (headers, data) in enumerate(parts):
        assert headers["content-type"] == "image/jpeg"
        assert headers["content-length"] == str(len(data))
        assert headers["x-edged-seq"] == str(i)


def test_each_part_is_closed_by_the_boundary_at_once():
    # A browser shows a part as soon as the boundary after it arrives: it must not wait for
    # the next frame.
    assert mjpeg.part(b"jpeg").endswith(b"jpeg\r\n--edgedframe\r\n")
    assert mjpeg.CONTENT_TYPE == "multipart/x-mixed-replace; boundary=edgedframe"


def test_jpeg_bytes_that_look_like_a_boundary_do_not_split_a_part():
    tricky = b"\xff\xd8\r\n--edgedframe\r\nnot a header\r\n\xff\xd9"
    body = mjpeg.opening() + mjpeg.part(tricky)
    assert [p[1] for p in mjpeg.read_parts(io.BytesIO(body))] == [tricky]


def test_reader_is_strict_about_framing():
    with pytest.raises(ValueError, match="boundary"):
        list(mjpeg.read_parts(io.BytesIO(b"garbage\r\n")))
    no_length = b"--edgedframe\r\nContent-Type: image/jpeg\r\n\r\nxx\r\n--edgedframe\r\n"
    with pytest.raises(ValueError, match="Content-Length"):
        list(mjpeg.read_parts(io.BytesIO(no_length)))


def test_reader_stops_at_a_truncated_part_or_the_closing_boundary():
    body = mjpeg.opening() + mjpeg.part(b"one") + mjpeg.part(b"two")
    truncated = body[: len(body) - len(b"two\r\n--edgedframe\r\n") + 1]
    assert [p[1] for p in mjpeg.read_parts(io.BytesIO(truncated))] == [b"one"]
    closed = (
        mjpeg.opening() + mjpeg.part(b"one")[: -len(b"--edgedframe\r\n")] + b"--edgedframe--\r\n"
    )
    assert [p[1] for p in mjpeg.read_parts(io.BytesIO(closed))] == [b"one"]
