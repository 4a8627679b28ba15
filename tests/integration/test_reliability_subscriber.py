"""Subscribers that connect and never read cannot block the pipeline or grow its memory.

Three stuck subscribers join a running daemon:

- a raw TCP client that speaks just enough ZMTP 3.0 to subscribe to ``detections.`` and then
  never reads a byte (its receive buffer is 4 KiB);
- the same on ``frames.``, the preview JPEGs (~100 KB each at 12 fps): it fills the publisher's
  kernel send buffer within seconds, after which ZeroMQ's send high-water mark
  (``publish.send_hwm``) drops its messages — the case that would block or grow memory if
  anything did;
- a pyzmq SUB for everything that never calls recv.

The pipeline must go on publishing, the publish process keep its memory, and a healthy
subscriber beside them must keep receiving every frame published. Counted in frames, not timed:
what a busy machine's speed does to the frame rate says nothing about a blocked publisher.
"""

from __future__ import annotations

import itertools
import socket
import threading
from pathlib import Path

import psutil
import pytest
import zmq

from tests.daemon import VIDEO, Daemon, poll_until, require
from tests.tcp_queue import send_queue, tcp_wmem_max, wait_until_full

pytestmark = pytest.mark.integration

GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("publisher closed the connection during the handshake")
        data += chunk
    return data


def never_reading_subscriber(port: int, topic: bytes) -> socket.socket:
    """A ZMTP 3.0 SUB over a plain socket: handshake, subscribe, then never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(GREETING[:10])  # signature first: libzmq answers each part of the greeting
    _recv_exact(sock, 10)
    sock.sendall(GREETING[10:])
    _recv_exact(sock, 54)
    ready = b"\x05READY\x0bSocket-Type" + (3).to_bytes(4, "big") + b"SUB"
    subscribe = b"\x01" + topic  # ZMTP 3.0: a subscription is a message starting with 1
    sock.sendall(b"\x04" + bytes([len(ready)]) + ready + b"\x00" + bytes([len(subscribe)])
                 + subscribe)  # fmt: skip
    flags, size = _recv_exact(sock, 2)  # the publisher's READY (a short command frame)
    assert flags == 0x04, flags
    _recv_exact(sock, size)
    return sock


class Collector(threading.Thread):
    """A healthy subscriber: reads everything, remembers each message's seq."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon=True)
        self.sub = daemon.subscriber()
        self.seqs: list[int] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                got = Daemon.receive(self.sub, timeout=0.5)
            except zmq.ZMQError:  # closed under us when the test fails
                return
            if got is not None:
                self.seqs.append(got[1]["seq"])

    def newest(self) -> int:
        return self.seqs[-1] if self.seqs else -1


def gaps(seqs: list[int]) -> list[tuple[int, int]]:
    """Missing sequence numbers (as first, last) in what a subscriber received."""
    return [(a + 1, b - 1) for a, b in itertools.pairwise(seqs) if b != a + 1]


def dropped(daemon: Daemon) -> float:
    """Frames the pipeline itself dropped or refused (any stage): no subscriber sees those."""
    samples = daemon.metrics().samples("edged_frames_total")
    return sum(s.value for s in samples if s.labels.get("outcome") != "ok")


STUCK_FRAMES = 60  # published while every stuck subscriber is saturated (5 s of the video)


def test_subscribers_that_never_read_do_not_block_or_grow_the_pipeline(tmp_path: Path) -> None:
    pytest.importorskip("edged.pipeline.stages.preview_tap", reason="needs the preview JPEG topic")
    config = {
        "publish": {"send_hwm": 10},
        # Big JPEGs of every frame: the frames subscriber's buffers fill within seconds.
        "preview": {
            "enabled": True,
            "fps": 30,
            "width": 768,
            "jpeg_quality": 95,
            "publish_topic": True,
        },
    }
    # Lossless: every frame is published once, so the healthy subscriber must see every seq
    # however slowly a busy machine runs (a live mode drops frames when the machine is slow).
    # Counts, not rates: a publisher blocked by a stuck subscriber publishes nothing more, one
    # that is not publishes every frame, whatever the machine's speed.
    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--loop", "--mode", "lossless",
                config=config) as daemon:  # fmt: skip
        daemon.wait_ready()
        collector = Collector(daemon)
        collector.start()
        publish = psutil.Process(daemon.ctl("status")["stages"]["publish"]["pid"])
        poll_until(lambda: collector.seqs, 60, daemon.log_tail)

        raw_detections = never_reading_subscriber(daemon.publish_port, b"detections.")
        raw_frames = never_reading_subscriber(daemon.publish_port, b"frames.")
        stuck_zmq = zmq.Context.instance().socket(zmq.SUB)
        stuck_zmq.setsockopt(zmq.LINGER, 0)
        stuck_zmq.setsockopt(zmq.RCVHWM, 1)
        stuck_zmq.setsockopt(zmq.RCVBUF, 4096)
        stuck_zmq.setsockopt(zmq.SUBSCRIBE, b"")
        stuck_zmq.connect(daemon.publish_endpoint)
        try:
            # The frames subscriber's kernel queue grows until the buffer is full: from then on
            # only ZeroMQ's high-water mark stands between the publisher and that subscriber.
            frames_port = raw_frames.getsockname()[1]
            queued = wait_until_full(daemon.publish_port, frames_port)
            lost0, first = dropped(daemon), collector.newest()
            uss: list[int] = []

            def published_on() -> bool:  # the publish process's memory sampled meanwhile
                uss.append(publish.memory_full_info().uss)
                return collector.newest() >= first + STUCK_FRAMES

            poll_until(published_on, 180,
                       lambda: f"publishing stopped at seq {collector.newest()} (from {first}) "
                               f"with stuck subscribers\n{daemon.log_tail()}", 0.5)  # fmt: skip
            lost = dropped(daemon) - lost0
            # the kernel queue stays within the socket's buffer limit: the rest was dropped
            assert (send_queue(daemon.publish_port, frames_port) or 0) <= tcp_wmem_max()
            assert daemon.ctl("status")["stages"]["publish"]["alive"]
        finally:
            for sock in (raw_detections, raw_frames):
                sock.close()
            stuck_zmq.close(0)
        collector.running = False
        collector.join(5)
        assert daemon.stop() == 0

    # Private memory (USS: RSS would also count shared ring pages touched for the first time,
    # at a pace set by the machine's load; queued messages are private).
    growth_mb = (max(uss) - min(uss)) / 2**20
    received = [seq for seq in collector.seqs if seq > first]
    print(f"\nstuck subscribers: {len(received)} messages received after the publisher's "
          f"kernel queue to the frames subscriber filled ({queued / 1e6:.1f} MB); publish USS "
          f"{min(uss) / 2**20:.0f}-{max(uss) / 2**20:.0f} MiB")  # fmt: skip
    assert growth_mb < 4, f"publish memory grew {growth_mb:.1f} MiB with stuck subscribers"
    # Every frame published reached the healthy subscriber: no hole in its sequence numbers but
    # for frames the pipeline itself refused (lossless mode drops none; errors are counted).
    holes = gaps(collector.seqs)
    assert sum(b - a + 1 for a, b in holes) <= lost, (holes, lost)


def test_edged_subscribe_into_a_pipe_that_closes_ends_quietly(tmp_path: Path) -> None:
    """`edged subscribe | head -3`: head exits after three lines, the subscriber must follow
    without a BrokenPipeError traceback."""
    import subprocess
    import sys

    from tests.daemon import REPO_ROOT

    with Daemon(tmp_path, "--source", "synthetic:") as daemon:
        daemon.wait_ready()
        subscriber = [sys.executable, "-m", "edged.cli", "subscribe", daemon.publish_endpoint,
                      "--timeout", "30"]  # fmt: skip
        done = subprocess.run(
            f"{' '.join(subscriber)} | head -3", shell=True, cwd=REPO_ROOT,
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    assert len(done.stdout.splitlines()) == 3
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
