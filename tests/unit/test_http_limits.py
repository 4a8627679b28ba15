"""The HTTP server under clients that try to hold it (issue 19 item 3): real sockets against
the real HttpServer. No timing asserts: each test waits for an event with a generous bound."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from edged.http_intake import IntakeLimits
from edged.http_server import HttpServer
from tests.daemon import poll_until
from tests.tools.http_load import Holders, raw_request

GET_METRICS = b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"


def serve(**limits: float) -> HttpServer:
    http = HttpServer("127.0.0.1", 0, CollectorRegistry(), lambda: (True, "fine"),
                      lambda: (True, "ready"), limits=IntakeLimits(**limits))  # fmt: skip
    http.start()
    return http


@pytest.fixture
def small() -> Iterator[HttpServer]:
    http = serve(max_connections=4, request_timeout_s=60)
    yield http
    http.stop()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def test_beyond_max_connections_a_503_at_once_then_service_again(small):
    held = [socket.create_connection(("127.0.0.1", small.port)) for _ in range(4)]
    try:
        poll_until(lambda: small.intake.open_connections == 4, 30, "idle connections not seen")
        answer = raw_request(small.port, GET_METRICS)
        assert status_of(answer) == 503, answer[:200]
        assert b"Retry-After" in answer
    finally:
        for sock in held:
            sock.close()
    poll_until(lambda: small.intake.open_connections == 0, 30, "closed connections not seen")
    assert status_of(raw_request(small.port, GET_METRICS)) == 200


def test_a_request_that_trickles_in_is_cut_at_the_whole_request_deadline():
    http = serve(request_timeout_s=1.0)
    try:
        with socket.create_connection(("127.0.0.1", http.port), timeout=30) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n")
            sock.settimeout(0.1)
            give_up = time.monotonic() + 60  # a per-recv timeout never fires while bytes come
            answer = b""
            while time.monotonic() < give_up:
                try:
                    sock.sendall(b"X")  # one header byte at a time, forever
                    answer = sock.recv(4096)
                    break
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
            assert status_of(answer) == 408, answer
    finally:
        http.stop()


def test_an_oversized_request_head_is_refused_with_431(small):
    head = b"GET /metrics HTTP/1.0\r\n" + b"X-Filler: " + b"a" * 20_000 + b"\r\n\r\n"
    assert status_of(raw_request(small.port, head)) == 431
    many = b"GET /metrics HTTP/1.0\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(3000))
    assert status_of(raw_request(small.port, many + b"\r\n")) == 431


def test_metrics_and_readyz_answer_while_idle_and_slow_clients_hold_connections():
    http = serve(max_connections=400, request_timeout_s=5)
    try:
        with Holders(http.port, idle=150, slow=60, drip_s=0.5) as holders:
            poll_until(lambda: http.intake.open_connections >= 200, 60, "holders not connected")
            for path in (b"/metrics", b"/readyz", b"/metrics"):
                answer = raw_request(http.port, b"GET %s HTTP/1.0\r\n\r\n" % path)
                assert status_of(answer) == 200, answer[:200]
            # The slow ones are cut at the deadline (and come back), none is ever answered 200.
            poll_until(lambda: holders.reopened >= 60, 60, "slow clients never cut")
            assert not any(a.startswith(b"HTTP/1.0 200") for a in holders.answers)
    finally:
        http.stop()
