"""The publish stage's preview tap with a real shared-memory ring and real ZeroMQ sockets."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from prometheus_client import CollectorRegistry

from edged.metrics import Metrics
from edged.pipeline.messages import Frame
from edged.pipeline.ring import SharedRing
from edged.pipeline.stages.preview_tap import PreviewTap
from edged.preview.config import PreviewConfig
from edged.preview.latency import LatencyWindow
from edged.preview.subscriptions import SubscriptionTracker, configure_xpub
from edged.preview.wire import decode_frame, frames_topic, private_endpoint
from tests.rings import scratch_ring

W, H = 768, 432


@pytest.fixture
def ring() -> Iterator[SharedRing]:
    with scratch_ring("pvtest", 2, W * H * 3) as r:
        yield r


@pytest.fixture
def ctx() -> zmq.Context:
    return zmq.Context.instance()


def put_frame(ring: SharedRing, seq: int, slot: int = 0) -> Frame:
    image = np.full((H, W, 3), 40 + seq % 100, np.uint8)
    ring.array(slot, image.shape, np.uint8)[...] = image
    ring.mark(slot, seq)
    return Frame(seq=seq, wall_time=1.0e9 + seq, captured=float(seq), width=W, height=H,
                 frame_slot=slot)  # fmt: skip


def message_for(frame: Frame) -> dict:
    return {
        "camera_id": "cam0", "seq": frame.seq, "timestamp": frame.wall_time,
        "source": {"width": W, "height": H},
        "model": {"name": "m", "variant": "fp32", "backend": "onnxruntime", "precision": "fp32"},
        "latency_ms": {"end_to_end": 50.0},
        "detections": [{"label": "person", "class_id": 0, "confidence": 0.9,
                        "box": [100.0, 100.0, 300.0, 400.0]}],
    }  # fmt: skip


def subscriber(ctx: zmq.Context, endpoint: str, topic: bytes = b"frames.") -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    return sock


def service_until(tap: PreviewTap, condition, timeout: float = 10.0, public=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        if public is not None:
            while public.poll(0):
                tap.public_event(public.recv())
        tap.service()
        time.sleep(0.01)


def offer(tap: PreviewTap, frame: Frame, now: float) -> None:
    """Offer a frame, then let the encoder finish and the tap ship every result."""
    tap.offer(frame, message_for(frame), now)
    service_until(tap, lambda: not tap.encoder.busy and tap.sent == tap.encoder.encoded)


def receive(sock: zmq.Socket, count: int, timeout: float = 10.0) -> list[list[bytes]]:
    """``count`` messages (fewer only past the deadline, for the caller's assertion to show),
    then any more already there. The deadline only bounds a hang: a busy machine may take a
    while to move messages through ZeroMQ's I/O thread."""
    got: list[list[bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        got.append(sock.recv_multipart())
    return got + receive_all(sock, 50)


def receive_all(sock: zmq.Socket, wait_ms: int = 200) -> list[list[bytes]]:
    got = []
    while sock.poll(wait_ms):
        got.append(sock.recv_multipart())
        wait_ms = 50
    return got


def make_tap(cfg: PreviewConfig, ring, ctx, tmp_path: Path, public=None, **kw) -> PreviewTap:
    return PreviewTap(cfg, "cam0", ring, ctx, tmp_path, public, **kw)


def test_nothing_is_copied_while_nobody_watches(ring, ctx, tmp_path, monkeypatch):
    tap = make_tap(PreviewConfig(enabled=True, fps=30), ring, ctx, tmp_path)
    try:
        calls = []
        monkeypatch.setattr(tap, "snapshot", lambda frame: calls.append(frame.seq))
        for seq in range(20):
            tap.offer(put_frame(ring, seq), {}, seq * 0.1)
            tap.service()
        assert calls == []
        assert not tap.watched
    finally:
        tap.close()


def test_watched_frames_go_out_at_the_configured_rate_with_their_seq(ring, ctx, tmp_path):
    tap = make_tap(PreviewConfig(enabled=True, fps=5, width=640), ring, ctx, tmp_path)
    sub = subscriber(ctx, private_endpoint(tmp_path), frames_topic("cam0"))
    try:
        service_until(tap, lambda: tap.watched)
        for seq in range(21):  # one second of 20 fps
            offer(tap, put_frame(ring, seq), seq * 0.05)
        assert 5 <= tap.sent <= 6  # 0.0, 0.2 … 1.0 s at 5 fps (the last as floats round)
        got = receive(sub, tap.sent)
        assert len(got) == tap.sent, [decode_frame(m)[0]["seq"] for m in got]
        seqs = []
        for parts in got:
            assert parts[0] == b"frames.cam0"
            header, jpeg = decode_frame(parts)
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (360, 640, 3)
            assert (header["width"], header["height"]) == (640, 360)
            # The picture is the frame with that seq (each frame has its own grey level).
            assert abs(int(np.median(image[100:200, 400:500])) - (40 + header["seq"])) <= 3
            seqs.append(header["seq"])
        assert seqs == sorted(seqs) and seqs[0] == 0
        assert min(b - a for a, b in itertools.pairwise(seqs)) >= 3  # ≥ 0.15 s apart
    finally:
        sub.close(0)
        tap.close()


def test_a_busy_encoder_makes_the_preview_skip_not_wait(ring, ctx, tmp_path, monkeypatch):
    tap = make_tap(PreviewConfig(enabled=True, fps=30), ring, ctx, tmp_path)
    sub = subscriber(ctx, private_endpoint(tmp_path))
    try:
        service_until(tap, lambda: tap.watched)
        tap.encoder._working = True  # as if a slow encode were still running
        calls = []
        monkeypatch.setattr(tap, "snapshot", lambda frame: calls.append(frame.seq))
        frame = put_frame(ring, 1)
        message = message_for(frame)
        start = time.monotonic()
        for seq in range(50):
            tap.offer(frame, message, seq * 1.0)
        assert calls == []  # skipped: no snapshot taken for the busy encoder
        # An offer that waited for this encoder would wait for good (it never finishes): the
        # bound catches that, not a speed.
        assert time.monotonic() - start < 30
    finally:
        tap.encoder._working = False
        sub.close(0)
        tap.close()


def test_a_new_viewer_gets_the_last_frame_at_once(ring, ctx, tmp_path):
    tap = make_tap(PreviewConfig(enabled=True), ring, ctx, tmp_path)
    first = subscriber(ctx, private_endpoint(tmp_path))
    try:
        service_until(tap, lambda: tap.watched)
        offer(tap, put_frame(ring, 3), 0.0)
        assert [decode_frame(m)[0]["seq"] for m in receive(first, 1)] == [3]
        late = subscriber(ctx, private_endpoint(tmp_path))  # e.g. after the source ended
        try:
            got: list = []
            service_until(tap, lambda: got.extend(receive_all(late, 20)) or got)
            assert decode_frame(got[0])[0]["seq"] == 3
        finally:
            late.close(0)
    finally:
        first.close(0)
        tap.close()


@pytest.mark.parametrize("publish_topic", [True, False])
def test_frames_topic_on_the_public_publisher(ring, ctx, tmp_path, publish_topic):
    public = ctx.socket(zmq.XPUB)
    configure_xpub(public)
    public.bind(f"ipc://{tmp_path}/pub.sock")
    cfg = PreviewConfig(enabled=True, publish_topic=publish_topic)
    tap = make_tap(cfg, ring, ctx, tmp_path, public)
    detections = subscriber(ctx, f"ipc://{tmp_path}/pub.sock", b"detections.")
    frames = subscriber(ctx, f"ipc://{tmp_path}/pub.sock", b"frames.cam0")
    try:
        service_until(tap, lambda: tap.public_subs.matching(b"frames.cam0") == 1, public=public)
        assert tap.watched is publish_topic  # a remote viewer alone makes the tap encode
        if publish_topic:
            offer(tap, put_frame(ring, 9), 0.0)
            got = receive(frames, 1)
            assert [decode_frame(m)[0]["seq"] for m in got] == [9]
        assert receive_all(detections, 50) == []  # detection subscribers never get JPEGs
    finally:
        for sock in (detections, frames, public):
            sock.close(0)
        tap.close()


def test_subscription_tracker_counts_exactly():
    t = SubscriptionTracker()
    for event in (b"\x01frames.", b"\x01frames.", b"\x01detections.cam0", b"\x01"):
        t.feed(event)
    assert t.matching(b"frames.cam0") == 3  # two "frames." and the catch-all ""
    assert t.matching(b"detections.cam0") == 2
    assert t.feed(b"\x00frames.") == (-1, b"frames.")
    assert t.matching(b"frames.cam0") == 2
    assert t.feed(b"\x00unknown") == (0, b"unknown")  # never below zero
    assert t.matching(b"other") == 1


def test_latency_window_reports_recent_means_per_stage():
    metrics = Metrics(CollectorRegistry())
    clock = [0.0]
    window = LatencyWindow(metrics.registry, window_s=5.0, clock=lambda: clock[0])
    assert window.read()["infer"] is None
    for _ in range(10):
        metrics.stage_latency.labels("infer", "").observe(0.100)
        metrics.end_to_end_latency.labels("").observe(0.150)
    assert window.read()["infer"] == pytest.approx(100.0)
    clock[0] = 6.0
    for _ in range(10):
        metrics.stage_latency.labels("infer", "").observe(0.020)
        metrics.end_to_end_latency.labels("").observe(0.050)
    recent = window.read()
    assert recent["infer"] == pytest.approx(20.0)  # the last window only, not the mean since start
    assert recent["end_to_end"] == pytest.approx(50.0)
    clock[0] = 20.0
    assert window.read()["infer"] == pytest.approx(60.0)  # idle: the mean since start


def test_header_is_json_and_names_the_source():
    from edged.preview.wire import build_header, encode_header

    frame = Frame(seq=1, wall_time=2.0, captured=0.0, width=W, height=H, frame_slot=0)
    header = json.loads(encode_header(build_header(message_for(frame), 640, 360, 4.0)))
    assert header["schema_version"] == 1
    assert header["source"] == {"width": W, "height": H}
    assert header["fps"] == 4.0


def test_a_failing_snapshot_never_fails_the_frame(ring, ctx, tmp_path, monkeypatch):
    tap = make_tap(PreviewConfig(enabled=True, fps=30), ring, ctx, tmp_path)
    sub = subscriber(ctx, private_endpoint(tmp_path))
    try:
        service_until(tap, lambda: tap.watched)

        def broken(frame):
            raise ValueError("torn slot")

        monkeypatch.setattr(tap, "snapshot", broken)
        for seq in range(3):
            tap.offer(put_frame(ring, seq), message_for(put_frame(ring, seq)), seq * 1.0)
        assert tap.failures == 3
    finally:
        sub.close(0)
        tap.close()
