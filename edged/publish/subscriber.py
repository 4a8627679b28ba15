"""``edged subscribe``: print detections as they arrive (also a reference subscriber)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import zmq

from edged.control import configure_curve_client
from edged.publish.schema import decode_payload
from edged.tracking.events import format_event


def format_message(message: dict, now: float | None = None, note: str = "") -> str:
    """One line per message; ``age`` is how old its frame is (wall clocks: same host or NTP)."""
    dets = ", ".join(
        f"{d['label']} {d['confidence']:.2f} [{', '.join(f'{v:.0f}' for v in d['box'])}]"
        for d in message["detections"]
    )
    model = message["model"]
    e2e = message["latency_ms"].get("end_to_end", 0.0)
    age_ms = ((time.time() if now is None else now) - message["timestamp"]) * 1000.0
    return (
        f"#{message['seq']} {message['camera_id']} {model['name']}/{model['variant']} "
        f"{e2e:.1f}ms age {age_ms:.0f}ms: {dets or '-'}{note}"
    )


def sequence_note(previous: int | None, seq: int, skipped_here: int = 0) -> str:
    """What the step from ``previous`` to ``seq`` says: frames this subscriber never got (the
    pipeline dropped them, or the high-water mark did), or a daemon restart (seq starts at 0
    again). ``skipped_here`` are messages received but deliberately not shown (--latest)."""
    if previous is None:
        return ""
    if seq <= previous:
        return "  [seq went back: the daemon restarted]"
    missed = seq - previous - 1 - skipped_here
    parts = []
    if skipped_here:
        parts.append(f"{skipped_here} older skipped")
    if missed > 0:
        parts.append(f"{missed} missed")
    return f"  [{', '.join(parts)}]" if parts else ""


def newest_queued(sock: zmq.Socket, first: list[bytes],
                  topic: bytes | None = None) -> tuple[list[bytes], int]:  # fmt: skip
    """The newest message already queued behind ``first``, and how many older ones it skipped.

    A reader slower than the camera otherwise works through a backlog (the publisher's and
    this socket's high-water marks plus TCP buffers: minutes of frames on a Pi) and shows the
    past as if it were now. ZeroMQ's CONFLATE cannot do this: it drops multipart messages.
    The live preview reads its JPEGs the same way.

    ``topic``: only messages on exactly this topic count (a subscription is a prefix:
    ``detections.cam1`` also receives ``detections.cam10``); ``[]`` when none was.
    """

    def wanted(message: list[bytes]) -> bool:
        return topic is None or (bool(message) and message[0] == topic)

    latest, skipped = (first if wanted(first) else []), 0
    while True:
        try:
            message = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return latest, skipped
        if wanted(message):
            skipped += bool(latest)
            latest = message


def subscribe(address: str, topic: str, count: int = 0, raw: bool = False,
              idle_timeout_s: float = 0, latest: bool = False,
              curve: tuple[Path, Path | None] | None = None) -> int:  # fmt: skip
    """Print what arrives; ``curve``: (server public key file, client secret key file or
    None for a throwaway key) for a publisher with CURVE keys."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        try:
            configure_curve_client(sock, server_key=curve[0], client_key=curve[1])
        except BaseException:
            sock.close()
            raise
    if latest:  # keep little queued here: what is queued is skipped anyway
        sock.setsockopt(zmq.RCVHWM, 10)
    sock.connect(address)
    sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    received = 0
    last_seq: dict[str, int] = {}
    try:
        while count <= 0 or received < count:
            if idle_timeout_s > 0 and not sock.poll(int(idle_timeout_s * 1000)):
                print(f"no message for {idle_timeout_s:.0f}s", file=sys.stderr)
                return 1
            parts = sock.recv_multipart()
            skipped = 0
            if latest:
                parts, skipped = newest_queued(sock, parts)
            if parts[0].startswith(b"frames."):  # [topic, header, jpeg]: show the header only
                header = json.loads(parts[1])
                print(
                    json.dumps(header)
                    if raw
                    else f"#{header.get('seq')} frame {len(parts[-1])} bytes JPEG",
                    flush=True,
                )
            elif parts[0].startswith(b"events."):  # seq: the frame's; gaps are normal here
                event = decode_payload(parts[1])
                print(json.dumps(event) if raw else format_event(event), flush=True)
            else:
                message = decode_payload(parts[1])
                camera = str(message.get("camera_id"))
                note = sequence_note(last_seq.get(camera), message["seq"], skipped)
                last_seq[camera] = message["seq"]
                print(json.dumps(message) if raw else format_message(message, note=note),
                      flush=True)  # fmt: skip
            received += 1
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # The reader went away (`edged subscribe | head`): stop quietly, as Unix tools do.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        sock.close()
    return 0
