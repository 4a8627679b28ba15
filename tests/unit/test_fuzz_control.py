"""Property-based tests of the control protocol: any bytes give a Request or a ProtocolError.

Three generators: arbitrary bytes, arbitrary JSON documents, and well-formed requests with one
part mutated. A valid parse must be a command edged knows with a sane variant; every error must
be a ProtocolError whose reply is valid JSON. ``pytest -s`` prints the number of inputs tried.

The daemon-level fuzzing (a few hundred payloads through real ZeroMQ REQ sockets) is in
tests/integration/test_reliability_control.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edged.control import (
    COMMANDS,
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    Request,
    error_reply,
    parse_request,
)

TRIED: dict[str, int] = {}
# The same examples every run (no test that passes or fails by luck); EDGED_FUZZ_EXPLORE=1
# draws new ones each run, to go looking.
DERANDOMIZE = os.environ.get("EDGED_FUZZ_EXPLORE") != "1"
SETTINGS = settings(max_examples=1500, deadline=None, database=None, derandomize=DERANDOMIZE,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=15,
)


def check(raw: bytes) -> Request | None:
    try:
        request = parse_request(raw)
    except ProtocolError as exc:
        assert str(exc)
        body = json.loads(error_reply(str(exc)))
        assert body == {"version": PROTOCOL_VERSION, "ok": False, "error": str(exc)}
        return None
    assert request.command in COMMANDS
    if request.command == "swap":
        assert isinstance(request.variant, str) and 1 <= len(request.variant) <= 64
    else:
        assert request.variant is None
    return request


@SETTINGS
@given(st.binary(max_size=300))
@example(b"")
@example(b"\x00")
@example(b"\xff\xfe")
@example(b"null")
@example(b"{}")
@example(b"\xef\xbb\xbf{}")  # a UTF-8 BOM
@example(b"x" * (MAX_REQUEST_BYTES + 1))
@example(b'{"version": 1, "command": "status"}' + b" " * MAX_REQUEST_BYTES)
def test_any_bytes_are_a_request_or_a_protocol_error(raw: bytes) -> None:
    TRIED["arbitrary bytes"] = TRIED.get("arbitrary bytes", 0) + 1
    check(raw)


@SETTINGS
@given(json_values)
def test_any_json_document_is_a_request_or_a_protocol_error(doc: Any) -> None:
    TRIED["arbitrary JSON"] = TRIED.get("arbitrary JSON", 0) + 1
    check(json.dumps(doc).encode())


base_requests = st.fixed_dictionaries(
    {"version": st.just(1), "command": st.sampled_from(COMMANDS)},
    optional={"variant": st.text(min_size=1, max_size=64)},
)


@SETTINGS
@given(base_requests, st.sampled_from(["version", "command", "variant", "extra"]), json_values)
def test_a_request_with_one_part_changed(request: dict, part: str, value: Any) -> None:
    TRIED["one field of a request changed"] = TRIED.get("one field of a request changed", 0) + 1
    request = dict(request)
    request[part] = value
    parsed = check(json.dumps(request).encode())
    if parsed is not None:  # accepted: then it must be exactly what was asked
        assert parsed.command == request["command"]
        assert parsed.variant == request.get("variant")
        assert request["version"] == 1 and set(request) <= {"version", "command", "variant"}


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_is_a_request_or_a_protocol_error(text: str) -> None:
    TRIED["arbitrary text"] = TRIED.get("arbitrary text", 0) + 1
    check(text.encode("utf-8", errors="surrogatepass"))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[" * 50_000, id="deeply-nested-json"),
        pytest.param(b'{"version": ' + b"1" * 5000 + b"}", id="5000-digit-integer"),
    ],
)
def test_pathological_json_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_request(raw)


def test_report_inputs_tried() -> None:
    total = sum(TRIED.values())
    print(f"\ncontrol protocol fuzzing: {total} inputs")
    for name, n in TRIED.items():
        print(f"  {n:6d}  {name}")
