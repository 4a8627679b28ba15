"""URI credentials never reach an error, a log line or a status (issue 19 item 2)."""

from __future__ import annotations

import io
import logging

import pytest

from edged.logs import configure_logging
from edged.redact import redact_uri
from edged.sources.base import SourceError
from edged.sources.opencv import OpenCVSource
from tests.daemon import free_port  # nothing listens there


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rtsp://admin:secret@10.0.0.2:554/s", "rtsp://***@10.0.0.2:554/s"),
        ("rtsp://admin:se@cret@cam/s", "rtsp://***@cam/s"),  # a raw "@" in the password
        ("x 'rtsps://u@cam/a?b=c@d' y", "x 'rtsps://***@cam/a?b=c@d' y"),
        ("http://cam/path@1", "http://cam/path@1"),  # an "@" after the host is not userinfo
        ("tcp://0.0.0.0:5555 and mail a@b.c", "tcp://0.0.0.0:5555 and mail a@b.c"),
    ],
)
def test_redact_uri(text, shown):
    assert redact_uri(text) == shown


def test_a_stream_that_cannot_open_names_it_without_the_password():
    uri = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/stream"
    with pytest.raises(SourceError) as caught:
        OpenCVSource(uri, open_timeout_s=5)
    assert "hunter2" not in str(caught.value)
    assert "rtsp://***@127.0.0.1" in str(caught.value)


def test_log_lines_and_tracebacks_are_redacted():
    out = io.StringIO()
    configure_logging("INFO", process_name="test", stream=out, journal=False)
    log = logging.getLogger("edged.test_redact")
    try:
        log.warning("opening %s", "rtsp://admin:hunter2@cam/s")
        try:
            raise RuntimeError("failed: rtsp://admin:hunter2@cam/s")
        except RuntimeError:
            log.exception("source")
    finally:
        configure_logging("INFO", process_name="test", stream=io.StringIO(), journal=False)
    text = out.getvalue()
    assert "hunter2" not in text
    assert text.count("rtsp://***@cam/s") >= 2  # the message and the exception line
