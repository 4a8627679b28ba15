"""The HTTP server's streaming/POST routes and the preview routes, against fake publishers."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from prometheus_client import CollectorRegistry

from edged import control
from edged.http_server import HttpServer, Request, Stream
from edged.metrics import Metrics
from edged.preview import mjpeg, routes
from edged.preview.config import PreviewConfig
from edged.preview.routes import PreviewRoutes
from edged.preview.subscriptions import SubscriptionTracker, configure_xpub
from edged.preview.wire import encode_header, frames_topic, private_endpoint


def request(url: str, data: bytes | None = None, headers: dict | None = None,
            timeout: float = 5.0) -> tuple[int, dict, bytes]:  # fmt: skip
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def server() -> Iterator[HttpServer]:
    http = HttpServer("127.0.0.1", 0, CollectorRegistry(), lambda: (True, "fine"),
                      lambda: (False, "not yet"))  # fmt: skip
    http.start()
    yield http
    http.stop()


def url(http: HttpServer, path: str) -> str:
    return f"http://127.0.0.1:{http.port}{path}"


# -- the server ----------------------------------------------------------------------------------


def test_probes_metrics_and_errors(server):
    assert request(url(server, "/healthz"))[0] == 200
    status, _, body = request(url(server, "/readyz?verbose=1"))
    assert status == 503 and json.loads(body)["reason"] == "not yet"
    assert request(url(server, "/metrics"))[0] == 200
    assert request(url(server, "/nope"))[0] == 404
    assert request(url(server, "/metrics"), data=b"x")[0] == 405
    server.add_request_route("/echo", lambda r: (200, "text/plain", r.body))
    assert request(url(server, "/echo"), data=b"hello")[2] == b"hello"
    assert request(url(server, "/echo"), data=b"x" * (65 * 1024))[0] == 413


def test_request_route_sees_query_and_headers(server):
    seen: list[Request] = []
    server.add_request_route("/r", lambda r: seen.append(r) or (200, "text/plain", b"ok",
                                                                  {"X-Extra": "1"}),
                             methods=("GET",))  # fmt: skip
    status, headers, _ = request(url(server, "/r?a=1&a=2"), headers={"X-Test": "yes"})
    assert status == 200 and headers["X-Extra"] == "1"
    assert seen[0].query == {"a": ["1", "2"]} and seen[0].headers["X-Test"] == "yes"


def test_a_failing_route_answers_500_and_the_server_lives_on(server):
    server.add_route("/boom", lambda: 1 / 0)
    assert request(url(server, "/boom"))[0] == 500
    assert request(url(server, "/healthz"))[0] == 200


def test_a_taken_port_is_named_in_the_error(server: HttpServer) -> None:
    with pytest.raises(OSError, match=f"HTTP server on 127.0.0.1:{server.port}: Address already"):
        HttpServer("127.0.0.1", server.port, CollectorRegistry(), lambda: (True, ""),
                   lambda: (True, ""))  # fmt: skip


def test_open_streams_never_block_stop():
    http = HttpServer("127.0.0.1", 0, CollectorRegistry(), lambda: (True, ""), lambda: (True, ""))
    ended = threading.Event()

    def ticker(_request: Request, stream: Stream) -> None:
        stream.start(200, "text/plain")
        while not stream.stopping:
            stream.write(b"tick\n")
            time.sleep(0.05)
        ended.set()

    http.add_stream("/ticks", ticker)
    http.start()
    response = urllib.request.urlopen(url(http, "/ticks"), timeout=5)
    assert response.readline() == b"tick\n"
    start = time.monotonic()
    http.stop()  # a stream that blocked it would block it for good: the bound tells only that
    assert time.monotonic() - start < 30
    assert ended.wait(30), "the stream did not notice the shutdown"
    response.close()


def test_a_stream_ends_when_its_client_leaves(server):
    ended = threading.Event()

    def ticker(_request: Request, stream: Stream) -> None:
        stream.start(200, "text/plain")
        while stream.write(b"x" * 4096):
            time.sleep(0.01)
        ended.set()

    server.add_stream("/ticks", ticker)
    response = urllib.request.urlopen(url(server, "/ticks"), timeout=5)
    response.read(100)
    response.close()
    assert ended.wait(5.0)


# -- the preview routes --------------------------------------------------------------------------


class FakePublishStage(threading.Thread):
    """An XPUB on the preview socket sending numbered JPEGs while someone subscribes."""

    def __init__(self, endpoint: str, interval: float = 0.05,
                 cameras: tuple[str, ...] = ("cam0",)) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.cameras = cameras
        self.interval = interval
        self.stop = threading.Event()
        self.bound = threading.Event()
        self.subs = SubscriptionTracker()

    def run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.XPUB)
        configure_xpub(sock)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        self.bound.set()
        seq = 0
        while not self.stop.is_set():
            while sock.poll(0):
                self.subs.feed(sock.recv())
            for index, camera in enumerate(self.cameras):
                if not self.subs.matching(frames_topic(camera)):
                    continue
                # Each camera's frames have their own size: a viewer can tell them apart.
                image = np.full((90 + 10 * index, 160, 3), seq % 250, np.uint8)
                jpeg = cv2.imencode(".jpg", image)[1].tobytes()
                header = encode_header({"seq": seq, "width": 160, "height": 90 + 10 * index})
                sock.send_multipart((frames_topic(camera), header, jpeg))
                seq += 1
            time.sleep(self.interval)
        sock.close(0)


class FakeControl(threading.Thread):
    """The supervisor's control ROUTER: answers swaps as edged does (with ``hold``, only once
    :attr:`release` is set; :attr:`got` tells a request is waiting)."""

    def __init__(self, endpoint: str, hold: bool = False) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.requests: list[dict] = []
        self.bound = threading.Event()
        self.got = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        self.bound.set()
        while sock.poll(10_000):
            identity, _, body = sock.recv_multipart()
            req = json.loads(body)
            self.requests.append(req)
            self.got.set()
            self.release.wait(30)
            ok = req["variant"] != "missing"
            answer = control.reply(ok, active=req["variant"], duration_s=0.1) if ok else \
                control.reply(False, error="no such variant", active="fp32")  # fmt: skip
            sock.send_multipart((identity, b"", answer))
        sock.close(0)


STATUS = {
    "camera_id": "cam0",
    "model": {"name": "yolov5n", "variant": "fp32", "backend": "onnxruntime",
              "precision": "fp32", "path": "/secret/models/yolov5n.onnx"},
    "variants": ["fp32", "static"],
    "swap_in_progress": False,
    "fps": 11.5,
    "frames_published": 100,
    "last_seq": 99,
    "source": {"uri": "rtsp://user:password@cam/stream", "width": 768, "height": 432,
               "connected": True, "ended": False, "mode": "live"},
}  # fmt: skip


def preview_server(tmp_path: Path, **cfg) -> tuple[HttpServer, PreviewRoutes, Metrics]:
    metrics = Metrics(CollectorRegistry())
    http = HttpServer("127.0.0.1", 0, metrics.registry, lambda: (True, ""), lambda: (True, ""))
    preview = PreviewRoutes(PreviewConfig(enabled=True, **cfg), "cam0", private_endpoint(tmp_path),
                            lambda: STATUS, f"ipc://{tmp_path}/control.sock",
                            metrics.registry)  # fmt: skip
    preview.install(http)
    http.start()
    return http, preview, metrics


@pytest.fixture
def publisher(tmp_path) -> Iterator[FakePublishStage]:
    stage = FakePublishStage(private_endpoint(tmp_path))
    stage.start()
    assert stage.bound.wait(5)
    yield stage
    stage.stop.set()
    stage.join(5)


def test_mjpeg_stream_parts_are_jpegs_in_order(tmp_path, publisher):
    http, _, _ = preview_server(tmp_path)
    try:
        with urllib.request.urlopen(url(http, "/preview.mjpg"), timeout=10) as response:
            assert response.headers["Content-Type"] == mjpeg.CONTENT_TYPE
            parts = []
            for headers, jpeg in mjpeg.read_parts(response):
                parts.append((int(headers["x-edged-seq"]), jpeg))
                if len(parts) == 5:
                    break
        seqs = [seq for seq, _ in parts]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        for seq, jpeg in parts:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (90, 160, 3)
            assert abs(int(image.mean()) - seq % 250) <= 2
        # The viewer left: its subscription goes, so the publish stage stops encoding.
        deadline = time.monotonic() + 5
        while publisher.subs.matching(b"frames.cam0") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher.subs.matching(b"frames.cam0") == 0
    finally:
        http.stop()


def test_viewers_beyond_the_limit_get_503(tmp_path, publisher):
    http, preview, _ = preview_server(tmp_path, max_viewers=1)
    try:
        with urllib.request.urlopen(url(http, "/preview.mjpg"), timeout=10) as first:
            next(mjpeg.read_parts(first))
            assert preview.viewers == 1
            status, headers, _ = request(url(http, "/preview.mjpg"))
            assert status == 503 and headers["Retry-After"] == "5"
    finally:
        http.stop()


def test_snapshot(tmp_path, publisher, monkeypatch):
    http, _, _ = preview_server(tmp_path)
    try:
        status, headers, body = request(url(http, "/preview.jpg"))
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert int(headers["X-Edged-Seq"]) >= 0
        assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (90, 160, 3)
    finally:
        http.stop()


def test_snapshot_without_a_publisher_is_503(tmp_path, monkeypatch):
    monkeypatch.setattr(routes, "SNAPSHOT_TIMEOUT_S", 0.3)
    http, _, _ = preview_server(tmp_path)
    try:
        assert request(url(http, "/preview.jpg"))[0] == 503
    finally:
        http.stop()


def test_status_json_hides_paths_and_source_uri(tmp_path):
    http, _, metrics = preview_server(tmp_path)
    metrics.stage_latency.labels("infer", "").observe(0.05)
    metrics.end_to_end_latency.labels("").observe(0.08)
    try:
        status, headers, body = request(url(http, "/preview/status.json"))
        assert status == 200 and headers["Content-Type"] == "application/json"
        s = json.loads(body)
        assert s["model"] == {"name": "yolov5n", "variant": "fp32", "backend": "onnxruntime",
                              "precision": "fp32"}  # fmt: skip
        assert s["variants"] == ["fp32", "static"] and s["control"] is False
        assert s["fps"] == 11.5
        assert s["latency_ms"]["infer"] == pytest.approx(50.0)
        assert s["latency_ms"]["end_to_end"] == pytest.approx(80.0)
        assert s["latency_ms"]["capture"] is None
        assert b"secret" not in body and b"password" not in body
    finally:
        http.stop()


def test_page_is_self_contained_with_a_strict_csp(tmp_path):
    http, _, _ = preview_server(tmp_path)
    try:
        status, headers, body = request(url(http, "/preview"))
    finally:
        http.stop()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert 'HERE + ".mjpg"' in page and 'HERE + "/status.json"' in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "no external assets"
    assert "http://" not in page and "https://" not in page
    csp = headers["Content-Security-Policy"]
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1).encode()
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp


JSON_HEADERS = {"Content-Type": "application/json"}


def test_swap_is_refused_unless_enabled(tmp_path):
    http, _, _ = preview_server(tmp_path)
    try:
        status, _, body = request(url(http, "/preview/swap"), b'{"variant": "static"}',
                                  JSON_HEADERS)  # fmt: skip
        assert status == 403 and "preview.control" in json.loads(body)["error"]
        assert request(url(http, "/preview/swap"))[0] == 405  # GET
    finally:
        http.stop()


def test_swap_goes_through_the_control_socket(tmp_path):
    ctl = FakeControl(f"ipc://{tmp_path}/control.sock")
    ctl.start()
    assert ctl.bound.wait(5)
    http, _, _ = preview_server(tmp_path, control=True)
    swap = url(http, "/preview/swap")
    try:
        status, _, body = request(swap, b'{"variant": "static"}', JSON_HEADERS)
        assert status == 200 and json.loads(body)["active"] == "static"
        assert ctl.requests == [{"version": 1, "command": "swap", "variant": "static"}]
        status, _, body = request(swap, b'{"variant": "missing"}', JSON_HEADERS)
        assert status == 409 and json.loads(body)["error"] == "no such variant"
        # A cross-site form can only send form encodings or text/plain: refused.
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert request(swap, b"variant=static", form)[0] == 415
        evil = {**JSON_HEADERS, "Origin": "http://evil.example"}
        assert request(swap, b'{"variant": "static"}', evil)[0] == 403
        same = {**JSON_HEADERS, "Origin": f"http://127.0.0.1:{http.port}"}
        assert request(swap, b'{"variant": "static"}', same)[0] == 200
        for bad in (b"not json", b"[]", b'{"variant": ""}', b'{"variant": 3}'):
            assert request(swap, bad, JSON_HEADERS)[0] == 400, bad
        assert len(ctl.requests) == 3
    finally:
        http.stop()


def test_swap_needs_the_local_ipc_control_socket(tmp_path):
    metrics = Metrics(CollectorRegistry())
    http = HttpServer("127.0.0.1", 0, metrics.registry, lambda: (True, ""), lambda: (True, ""))
    cfg = PreviewConfig(enabled=True, control=True)
    preview = PreviewRoutes(cfg, "cam0", private_endpoint(tmp_path), lambda: STATUS,
                            "tcp://127.0.0.1:5556", metrics.registry)  # fmt: skip
    preview.install(http)
    http.start()
    try:
        assert request(url(http, "/preview/swap"), b'{"variant": "x"}', JSON_HEADERS)[0] == 501
    finally:
        http.stop()


def test_a_viewer_that_left_before_any_frame_frees_its_slot(tmp_path):
    """No frame yet (the camera is down), so nothing is written: a viewer who closed the page
    is still noticed, and page reloads do not use up max_viewers."""
    http, preview, _ = preview_server(tmp_path, max_viewers=1)
    try:
        first = urllib.request.urlopen(url(http, "/preview.mjpg"), timeout=10)
        assert first.status == 200 and preview.viewers == 1
        first.close()
        deadline = time.monotonic() + 10
        while preview.viewers and time.monotonic() < deadline:
            time.sleep(0.1)
        assert preview.viewers == 0
        with urllib.request.urlopen(url(http, "/preview.mjpg"), timeout=10) as again:
            assert again.status == 200
    finally:
        http.stop()


def test_client_gone_answers_at_once_on_a_socket_with_a_timeout():
    """The server's sockets carry a timeout, and Python then waits that long in recv() even
    with MSG_DONTWAIT: the check must not block the route (a first version did, and stalled
    the MJPEG stream until the timeout)."""
    import socket
    import threading
    from types import SimpleNamespace

    server_side, client_side = socket.socketpair()
    server_side.settimeout(60.0)
    stream = Stream(SimpleNamespace(connection=server_side), threading.Event())
    try:
        started = time.monotonic()
        assert stream.client_gone() is False  # connected, nothing sent
        # A blocking check waits out the 60 s socket timeout; half of it only bounds a busy
        # machine's scheduling, not a speed.
        assert time.monotonic() - started < 30
        client_side.close()
        assert stream.client_gone() is True
    finally:
        server_side.close()


# -- several cameras -------------------------------------------------------------------------------

CAMERAS = ("cam1", "cam10", "door")  # cam1's topic is a prefix of cam10's


def camera_server(tmp_path: Path, status: dict) -> HttpServer:
    metrics = Metrics(CollectorRegistry())
    http = HttpServer("127.0.0.1", 0, metrics.registry, lambda: (True, ""), lambda: (True, ""))
    preview = PreviewRoutes(PreviewConfig(enabled=True), CAMERAS, private_endpoint(tmp_path),
                            lambda: status, None, metrics.registry)  # fmt: skip
    preview.install(http)
    http.start()
    return http


def test_each_camera_has_its_own_stream_and_snapshot(tmp_path):
    stage = FakePublishStage(private_endpoint(tmp_path), cameras=CAMERAS)
    stage.start()
    assert stage.bound.wait(5)
    http = camera_server(tmp_path, STATUS)
    try:
        for index, camera in enumerate(CAMERAS):
            status, _, body = request(url(http, f"/preview/{camera}.jpg"))
            assert status == 200
            image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (90 + 10 * index, 160, 3), camera  # never cam10's for cam1
        with urllib.request.urlopen(url(http, "/preview/cam1.mjpg"), timeout=10) as response:
            parts = [jpeg for _, jpeg in itertools.islice(mjpeg.read_parts(response), 10)]
        shapes = {cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR).shape for j in parts}
        assert shapes == {(90, 160, 3)}
        first = request(url(http, "/preview.jpg"))[2]  # the first camera's
        assert cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR).shape[0] == 90
        assert request(url(http, "/preview/garage.jpg"))[0] == 404  # not a configured camera
    finally:
        http.stop()
        stage.stop.set()
        stage.join(5)


def test_each_camera_page_and_status_show_that_camera(tmp_path):
    status = dict(STATUS, cameras={
        "cam10": {"fps": 4.0, "frames_published": 7, "last_seq": 6,
                  "source": {"uri": "rtsp://u:password@x/", "connected": False, "width": 640}},
    })  # fmt: skip
    http = camera_server(tmp_path, status)
    try:
        page = request(url(http, "/preview/cam10"))
        assert page[0] == 200 and page[2] == request(url(http, "/preview"))[2]  # the same page
        s = json.loads(request(url(http, "/preview/cam10/status.json"))[2])
        assert (s["camera_id"], s["fps"], s["last_seq"]) == ("cam10", 4.0, 6)
        assert s["source"]["connected"] is False and s["cameras"] == list(CAMERAS)
        body = request(url(http, "/preview/cam10/status.json"))[2]
        assert b"password" not in body
        top = json.loads(request(url(http, "/preview/status.json"))[2])
        assert top["camera_id"] == "cam1" and top["fps"] == STATUS["fps"]  # no entry: top level
    finally:
        http.stop()


def test_a_reload_adds_and_removes_cameras_pages(tmp_path):
    metrics = Metrics(CollectorRegistry())
    http = HttpServer("127.0.0.1", 0, metrics.registry, lambda: (True, ""), lambda: (True, ""))
    preview = PreviewRoutes(PreviewConfig(enabled=True), ["cam1", "door"],
                            private_endpoint(tmp_path), lambda: STATUS, None,
                            metrics.registry)  # fmt: skip
    preview.install(http)
    http.start()
    try:
        assert request(url(http, "/preview/door"))[0] == 200
        assert request(url(http, "/preview/garage"))[0] == 404
        preview.use_cameras(["door", "garage"])  # cam1 removed, garage added
        assert request(url(http, "/preview/garage"))[0] == 200
        for path in ("/preview/cam1", "/preview/cam1.jpg", "/preview/cam1/status.json",
                     "/preview/cam1.mjpg"):  # fmt: skip
            assert request(url(http, path))[0] == 404, path
        status = json.loads(request(url(http, "/preview/status.json"))[2])
        assert status["camera_id"] == "door" and status["cameras"] == ["door", "garage"]
    finally:
        http.stop()
