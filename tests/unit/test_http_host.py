"""DNS rebinding and swap flooding (issue 19 item 4): the real HttpServer and preview routes,
real HTTP requests with the Host a rebinding page would send."""

from __future__ import annotations

import json
import threading

import pytest
from prometheus_client import CollectorRegistry

from edged.config import ConfigError, parse_config
from edged.http_server import HttpServer, host_allowed
from edged.preview.routes import TokenBucket
from tests.tools.http_load import raw_request
from tests.unit.test_http_limits import status_of
from tests.unit.test_preview_http import JSON_HEADERS, FakeControl, preview_server, request, url


def get(port: int, path: str, host: str | None) -> int:
    head = f"GET {path} HTTP/1.1\r\nConnection: close\r\n"
    if host is not None:
        head += f"Host: {host}\r\n"
    return status_of(raw_request(port, (head + "\r\n").encode()))


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        (None, True),  # HTTP/1.0 tools; browsers always send one
        ("127.0.0.1:9108", True),
        ("192.168.1.20", True),
        ("[::1]:9108", True),
        ("localhost:9108", True),
        ("LocalHost.", True),
        ("cam.lan:9108", True),  # listed in allowed_hosts
        ("CAM.LAN.", True),
        ("evil.example", False),
        ("evil.example:9108", False),
        ("127.0.0.1.evil.example", False),
        ("[evil]:9108", False),
        ("", False),
    ],
)
def test_only_ip_literals_localhost_and_listed_names_are_served(host, ok):
    assert host_allowed(host, frozenset({"cam.lan"})) is ok


def test_a_rebound_name_gets_421_on_every_route():
    http = HttpServer("127.0.0.1", 0, CollectorRegistry(), lambda: (True, ""),
                      lambda: (True, ""), allowed_hosts=["cam.lan"])  # fmt: skip
    http.start()
    try:
        for path in ("/metrics", "/readyz", "/healthz"):
            assert get(http.port, path, "evil.example") == 421, path
            assert get(http.port, path, f"127.0.0.1:{http.port}") == 200, path
            assert get(http.port, path, "cam.lan") == 200, path
    finally:
        http.stop()


def with_control(tmp_path, hold: bool = False) -> tuple:
    """A control socket and a preview server with control on: (ctl, http, routes)."""
    ctl = FakeControl(f"ipc://{tmp_path}/control.sock", hold)
    ctl.start()
    assert ctl.bound.wait(5)
    http, preview, _ = preview_server(tmp_path, control=True)
    return ctl, http, preview


def test_the_preview_refuses_a_rebound_name_before_any_route_runs(tmp_path):
    ctl, http, _ = with_control(tmp_path)
    try:
        for path in ("/preview", "/preview/status.json", "/preview.jpg", "/preview.mjpg"):
            assert get(http.port, path, "evil.example") == 421, path
        body = b'{"variant": "static"}'
        head = b"POST /preview/swap HTTP/1.1\r\nHost: evil.example\r\n"
        head += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        swap = head + body
        assert status_of(raw_request(http.port, swap)) == 421
        assert ctl.requests == []
    finally:
        http.stop()


def test_swaps_from_the_page_are_rate_limited(tmp_path):
    ctl, http, preview = with_control(tmp_path)
    now = [0.0]
    preview.swaps = TokenBucket(3, 5.0, clock=lambda: now[0])
    swap = url(http, "/preview/swap")
    try:
        for _ in range(3):
            assert request(swap, b'{"variant": "static"}', JSON_HEADERS)[0] == 200
        status, headers, body = request(swap, b'{"variant": "static"}', JSON_HEADERS)
        assert status == 429 and headers["Retry-After"] == "5"
        assert "too many swaps" in json.loads(body)["error"]
        assert len(ctl.requests) == 3
        now[0] = 5.0  # one more token
        assert request(swap, b'{"variant": "static"}', JSON_HEADERS)[0] == 200
        assert request(swap, b'{"variant": "static"}', JSON_HEADERS)[0] == 429
    finally:
        http.stop()


def test_one_swap_from_the_page_at_a_time(tmp_path):
    ctl, http, _ = with_control(tmp_path, hold=True)
    swap = url(http, "/preview/swap")
    first: list = []
    worker = threading.Thread(target=lambda: first.append(
        request(swap, b'{"variant": "static"}', JSON_HEADERS, timeout=60)))  # fmt: skip
    worker.start()
    try:
        assert ctl.got.wait(30)  # the first swap is at the control socket
        status, _, body = request(swap, b'{"variant": "static"}', JSON_HEADERS)
        assert status == 409 and "in progress" in json.loads(body)["error"]
    finally:
        ctl.release.set()
        worker.join(60)
        http.stop()
    assert first[0][0] == 200


def test_allowed_hosts_are_names_only():
    with pytest.raises(ConfigError) as caught:
        parse_config({"http": {"allowed_hosts": ["http://pi.local:9108"]}})
    assert caught.value.errors[0][0] == "http.allowed_hosts"
    assert parse_config({"http": {"allowed_hosts": ["pi.local"]}}).http.allowed_hosts == [
        "pi.local"
    ]
