"""Frame hand-off over Unix datagrams: order, back-pressure, absent and restarted receivers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edged.pipeline import handoff
from edged.pipeline.handoff import MAX_MESSAGE_BYTES, FrameInbox, FrameOutbox, HandoffError


def never() -> bool:
    return False


class FakeTime:
    """The ``time`` of edged.pipeline.handoff: the clock moves only when the sender sleeps, so
    how long a send waited is exact whatever the machine's load. ``at(t, action)`` runs
    ``action`` (a receiver starting) once the clock reaches ``t``."""

    def __init__(self) -> None:
        self.now = 0.0
        self._due: list[tuple[float, Callable[[], object]]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for entry in [d for d in self._due if d[0] <= self.now]:
            self._due.remove(entry)
            entry[1]()

    def at(self, t: float, action: Callable[[], object]) -> None:
        self._due.append((t, action))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(handoff, "time", fake)
    return fake


def test_messages_arrive_whole_and_in_order(tmp_path: Path) -> None:
    inbox = FrameInbox(tmp_path / "a.in")
    outbox = FrameOutbox(tmp_path / "a.in")
    sent = [bytes([i]) * (i * 1000 + 1) for i in range(8)]
    for payload in sent:
        assert outbox.send(payload, never)
    assert inbox.wait(1.0)
    assert inbox.receive_all() == sent
    assert inbox.receive_all() == []
    inbox.close()
    outbox.close()
    assert not (tmp_path / "a.in").exists()


def test_a_full_receiver_makes_the_sender_wait_not_lose(tmp_path: Path) -> None:
    inbox = FrameInbox(tmp_path / "b.in")
    outbox = FrameOutbox(tmp_path / "b.in")
    total = 40  # well past Linux's default max_dgram_qlen of 10
    done = threading.Event()

    def produce() -> None:
        for i in range(total):
            assert outbox.send(i.to_bytes(4, "little"), never)
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    time.sleep(0.3)  # a fast machine shows a sender not held back; a slow one cannot fail here
    assert not done.is_set(), "the sender should be held back by the full queue"
    received: list[int] = []
    deadline = time.monotonic() + 60  # bounds a hang only
    while len(received) < total and time.monotonic() < deadline:
        if inbox.wait(0.1):
            received += [int.from_bytes(m, "little") for m in inbox.receive_all()]
    assert received == list(range(total))
    assert done.wait(30)
    inbox.close()


def test_the_first_message_waits_for_a_receiver_that_starts_late(
    tmp_path: Path, clock: FakeTime
) -> None:
    outbox = FrameOutbox(tmp_path / "c.in", absent_wait_s=0.1)
    started: list[FrameInbox] = []
    clock.at(0.4, lambda: started.append(FrameInbox(tmp_path / "c.in")))
    # The receiver starts after four times absent_wait_s: the first message waits regardless.
    assert outbox.send(b"first", never)
    assert clock.now >= 0.4
    (inbox,) = started
    assert inbox.wait(1.0) and inbox.receive_all() == [b"first"]
    inbox.close()


def test_a_receiver_that_stays_gone_gives_the_frame_up_after_the_wait(
    tmp_path: Path, clock: FakeTime
) -> None:
    inbox = FrameInbox(tmp_path / "d.in")
    outbox = FrameOutbox(tmp_path / "d.in", absent_wait_s=0.2)
    assert outbox.send(b"one", never)
    inbox.close()  # the stage died
    assert not outbox.send(b"two", never)
    assert 0.2 <= clock.now < 0.2 + 2 * handoff._RETRY_S  # the wait, and no more


def test_once_the_wait_is_spent_later_frames_are_given_up_at_once(
    tmp_path: Path, clock: FakeTime
) -> None:
    """The wait is for the receiver's absence, not per frame: a sender that also reads a camera
    (capture+preprocess) keeps its pace while the next stage restarts."""
    path = tmp_path / "g.in"
    inbox = FrameInbox(path)
    outbox = FrameOutbox(path, absent_wait_s=0.2)
    assert outbox.send(b"one", never)
    inbox.close()
    assert not outbox.send(b"two", never)  # waited the 0.2 s
    assert clock.now >= 0.2
    spent = clock.now
    for _ in range(5):
        assert not outbox.send(b"more", never)
    assert clock.now == spent  # not one retry: given up at once
    back = FrameInbox(path)  # the stage is back: delivered again, and a later absence
    assert outbox.send(b"again", never)  # gets its full wait
    assert back.wait(1.0) and back.receive_all() == [b"again"]
    back.close()
    assert not outbox.send(b"gone again", never)
    assert clock.now - spent >= 0.2


def test_a_restarted_receiver_gets_the_next_messages(tmp_path: Path) -> None:
    path = tmp_path / "e.in"
    first = FrameInbox(path)
    outbox = FrameOutbox(path, absent_wait_s=2.0)
    assert outbox.send(b"before", never)
    first.sock.close()  # killed: its socket file stays behind
    second = FrameInbox(path)  # the restarted stage binds the same path
    assert outbox.send(b"after", never)
    assert second.wait(1.0) and second.receive_all() == [b"after"]
    first.close()  # a late close of the dead one must not remove the new socket file
    assert path.exists()
    second.close()


def test_stop_interrupts_a_wait(tmp_path: Path) -> None:
    outbox = FrameOutbox(tmp_path / "nobody.in")
    calls = []

    def stop_on_third() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert not outbox.send(b"x", stop_on_third)


def test_oversize_messages_are_refused_clearly(tmp_path: Path) -> None:
    inbox = FrameInbox(tmp_path / "f.in")
    outbox = FrameOutbox(tmp_path / "f.in")
    assert outbox.send(b"small", never)  # connected: max_bytes is what the kernel granted
    assert outbox.max_bytes >= MAX_MESSAGE_BYTES
    with pytest.raises(HandoffError, match="exceeds"):
        outbox.send(b"x" * (outbox.max_bytes + 1), never)
    inbox.close()


def test_the_largest_frame_the_config_allows_fits_one_datagram() -> None:
    """``postprocess.max_detections`` is bounded so a published frame always fits a message."""
    import dataclasses

    import numpy as np

    from edged.config import ConfigError, PostprocessConfig, parse_config
    from edged.pipeline.messages import Frame, ModelDescriptor, dumps
    from edged.postprocess.decoders import Detections
    from edged.preprocess import Letterbox

    limit = PostprocessConfig.model_fields["max_detections"].metadata
    most = next(m.le for m in limit if hasattr(m, "le"))
    with pytest.raises(ConfigError) as info:
        parse_config({"postprocess": {"max_detections": most + 1}})
    assert "postprocess.max_detections" in dict(info.value.errors)
    labels = tuple(f"a fairly long class label {i}" for i in range(1000))
    model = ModelDescriptor("m/v/0", "m", "v", "onnxruntime", "fp32", 640, 640, "NHWC", "uint8",
                            "yolov8", labels, "/models/" + "x" * 200)  # fmt: skip
    detections = Detections(np.zeros((most, 4), np.float32), np.zeros(most, np.float32),
                            np.zeros(most, np.int64))  # fmt: skip
    frame = Frame(1, 0.0, 0.0, 1920, 1080, 0, (("capture", 0.0, 1.0),) * 5,
                  letterbox=Letterbox(1.0, 0, 0, 1920, 1080), model=model)  # fmt: skip
    assert len(dumps(dataclasses.replace(frame, detections=detections))) < MAX_MESSAGE_BYTES


def test_messages_past_the_default_buffer_size_arrive_whole_when_granted(tmp_path: Path) -> None:
    inbox = FrameInbox(tmp_path / "g.in")
    outbox = FrameOutbox(tmp_path / "g.in")
    assert outbox.send(b"first", never)
    big = bytes(range(256)) * ((outbox.max_bytes - 1024) // 256)
    if len(big) <= MAX_MESSAGE_BYTES:
        pytest.skip("this kernel grants no more than the default socket buffer")
    assert outbox.send(big, never)
    assert inbox.wait(1.0)
    assert inbox.receive_all() == [b"first", big]
    inbox.close()


def test_a_patient_send_waits_for_a_restarting_receiver_past_the_usual_wait(
    tmp_path: Path, clock: FakeTime
) -> None:
    path = tmp_path / "h.in"
    first = FrameInbox(path)
    outbox = FrameOutbox(path, absent_wait_s=0.1)
    assert outbox.send(b"before", never)
    first.close()
    started: list[FrameInbox] = []
    clock.at(0.5, lambda: started.append(FrameInbox(path)))  # five times absent_wait_s
    assert outbox.send(b"kept", never, True)
    assert clock.now >= 0.5
    (second,) = started
    assert second.wait(1.0) and second.receive_all() == [b"kept"]
    second.close()
