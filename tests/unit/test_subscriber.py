"""The reference subscriber (`edged subscribe`): gaps, restarts, message age, and skipping a
backlog with --latest, over real ZeroMQ sockets."""

from __future__ import annotations

import json
import time
import uuid

import zmq

from edged.publish.subscriber import format_message, newest_queued, sequence_note


def test_sequence_note_tells_gaps_skips_and_restarts_apart() -> None:
    assert sequence_note(None, 7) == ""
    assert sequence_note(6, 7) == ""
    assert sequence_note(6, 10) == "  [3 missed]"
    assert sequence_note(6, 10, skipped_here=3) == "  [3 older skipped]"
    assert sequence_note(6, 10, skipped_here=1) == "  [1 older skipped, 2 missed]"
    assert sequence_note(500, 0) == "  [seq went back: the daemon restarted]"


def test_format_message_shows_the_age_of_the_frame() -> None:
    detection = {"label": "dog", "confidence": 0.5, "box": [1, 2, 30, 40]}
    message = {"seq": 3, "camera_id": "cam0", "timestamp": 100.0,
               "model": {"name": "yolov5n", "variant": "static"},
               "latency_ms": {"end_to_end": 41.25}, "detections": [detection]}  # fmt: skip
    line = format_message(message, now=100.25, note="  [1 missed]")
    assert line == "#3 cam0 yolov5n/static 41.2ms age 250ms: dog 0.50 [1, 2, 30, 40]  [1 missed]"


def test_newest_queued_skips_to_the_last_message_of_a_backlog() -> None:
    ctx = zmq.Context.instance()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    try:
        # inproc: a message sent is queued at the reader when send() returns, so the backlog
        # below is all there without waiting (over TCP a sleep had to hope it had arrived).
        endpoint = f"inproc://newest-queued-{uuid.uuid4().hex}"
        pub.bind(endpoint)
        sub.connect(endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"detections.")
        deadline = time.monotonic() + 10
        while not sub.poll(50):  # PUB drops until the subscription has arrived
            pub.send_multipart((b"detections.cam0", b"{}"))
            assert time.monotonic() < deadline
        while sub.poll(200):
            sub.recv_multipart()
        for seq in range(50):  # a backlog the reader has not read yet
            pub.send_multipart((b"detections.cam0", json.dumps({"seq": seq}).encode()))
        first = sub.recv_multipart()
        latest, skipped = newest_queued(sub, first)
        assert json.loads(first[1])["seq"] == 0
        assert json.loads(latest[1])["seq"] == 49
        assert skipped == 49
        assert newest_queued(sub, latest) == (latest, 0)  # nothing queued: the message itself
        # With a topic: a prefix subscription also gets cam00's messages; they never count.
        for seq in range(50, 60):
            pub.send_multipart((b"detections.cam0", json.dumps({"seq": seq}).encode()))
            pub.send_multipart((b"detections.cam00", json.dumps({"seq": -seq}).encode()))
        first = sub.recv_multipart()
        latest, skipped = newest_queued(sub, first, b"detections.cam0")
        assert (latest[0], json.loads(latest[1])["seq"], skipped) == (b"detections.cam0", 59, 9)
        pub.send_multipart((b"detections.cam00", b"{}"))
        other = sub.recv_multipart()
        assert newest_queued(sub, other, b"detections.cam0") == ([], 0)  # only another's
    finally:
        pub.close(0)
        sub.close(0)
