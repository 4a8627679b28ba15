"""Multipart MJPEG (``multipart/x-mixed-replace``): writing parts, and reading them back.

Each part is ``Content-Type: image/jpeg`` with its ``Content-Length`` (plus ``X-Edged-Seq``,
the frame's sequence number). The boundary line after a JPEG is written together with it, so a
browser can show the picture at once instead of waiting for the next frame to end it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

BOUNDARY = "edgedframe"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
_DELIMITER = f"--{BOUNDARY}\r\n".encode()


def opening() -> bytes:
    """What the body starts with: the first boundary line."""
    return _DELIMITER


def part(jpeg: bytes, seq: int | None = None) -> bytes:
    """One part (headers, JPEG) followed by the boundary line that closes it."""
    head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
    if seq is not None:
        head += f"X-Edged-Seq: {seq}\r\n"
    return head.encode() + b"\r\n" + jpeg + b"\r\n" + _DELIMITER


def read_parts(
    stream: BinaryIO, boundary: str = BOUNDARY
) -> Iterator[tuple[dict[str, str], bytes]]:
    """(headers with lower-case names, body) for each part of a multipart stream.

    Strict on purpose (used by tests and viewers to check what edged sends): every part needs
    a Content-Length, and the boundary must follow the body.
    """
    delimiter = f"--{boundary}".encode()
    line = stream.readline()
    while line in (b"\r\n", b"\n"):  # an optional preamble of blank lines
        line = stream.readline()
    while line:
        if line.rstrip(b"\r\n") == delimiter + b"--":
            return
        if line.rstrip(b"\r\n") != delimiter:
            raise ValueError(f"expected boundary {delimiter!r}, got {line[:80]!r}")
        headers: dict[str, str] = {}
        while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if not line:
            return  # the stream ended between parts
        if "content-length" not in headers:
            raise ValueError(f"part without Content-Length: {headers}")
        length = int(headers["content-length"])
        body = stream.read(length)
        if len(body) < length:
            return
        yield headers, body
        line = stream.readline()
        if line in (b"\r\n", b"\n"):
            line = stream.readline()
