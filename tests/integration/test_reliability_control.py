"""Fuzzing the running daemon's control socket through real ZeroMQ sockets.

A few hundred generated payloads (random bytes, random JSON, requests with one part mutated,
sizes up to and past the 64 KiB request limit) go through REQ sockets, plus messages that are no
valid REQ envelope at all (multipart, DEALER without the empty delimiter, raw bytes on the
unix socket, a message past ZMQ_MAXMSGSIZE). Every REQ payload must get a JSON reply, and the
daemon must keep serving: status answers, frames flow, no stage restarted.
"""

from __future__ import annotations

import json
import random
import socket
import string

import pytest
import zmq

from edged.control import COMMANDS, MAX_REQUEST_BYTES
from tests.daemon import Daemon, poll_until

pytestmark = pytest.mark.integration

SEED = 20261122
PAYLOADS = 300


def random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.randint(-(2**70), 2**70)
    if kind == 3:
        return rng.uniform(-1e9, 1e9)
    if kind == 4:
        return "".join(
            rng.choice(string.printable + "éü中🙂\x00") for _ in range(rng.randrange(80))
        )
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {random_json(rng, 4) if rng.random() < 0.9 else "variant": random_json(rng, depth + 1)
            for _ in range(rng.randrange(5))}  # fmt: skip


def payloads(rng: random.Random, n: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < n:
        kind = len(out) % 6
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(1, 200)))
        elif kind == 1:
            out.append(json.dumps(random_json(rng)).encode())
        elif kind == 2:
            request: dict = {"version": 1, "command": rng.choice([*COMMANDS, "swap"])}
            part = rng.choice(["version", "command", "variant", "extra", "none"])
            if part != "none":
                request[part] = random_json(rng, 3)
            if request.get("command") == "reload":
                request["command"] = "status"  # no config file: reload only answers an error
            out.append(json.dumps(request).encode())
        elif kind == 3:
            size = rng.choice([MAX_REQUEST_BYTES - 1, MAX_REQUEST_BYTES + 1, 500_000])
            out.append(b'{"version": 1, "command": "status", "variant": "' + b"a" * size + b'"}')
        elif kind == 4:
            text = json.dumps(
                {
                    "version": 1,
                    "command": "swap",
                    "variant": rng.choice(
                        ["../../etc/passwd", "/etc/shadow", "a" * 65, "", "fp32\x00", "static"]
                    ),
                }
            )
            out.append(text.encode())
        else:
            good = b'{"version": 1, "command": "status"}'
            cut = rng.randrange(len(good))
            out.append(good[:cut] + rng.randbytes(rng.randrange(4)) + good[cut + 1 :])
    return out


def ask(endpoint: str, payload: bytes, timeout_ms: int = 30_000) -> dict | None:
    """The reply, or None after ``timeout_ms``: for a request that must be answered the
    default only bounds a hang (a busy machine answers late, not never)."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(payload)
        if not sock.poll(timeout_ms):
            return None
        return json.loads(sock.recv())
    finally:
        sock.close(0)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    with Daemon(tmp_path_factory.mktemp("ctl"), "--source", "synthetic:") as d:
        d.wait_ready()
        yield d


def test_hundreds_of_random_requests_all_get_answers(daemon: Daemon) -> None:
    rng = random.Random(SEED)
    endpoint = daemon.control_endpoint
    published = daemon.ctl("status")["frames_published"]
    ok = refused = 0
    for payload in payloads(rng, PAYLOADS):
        reply = ask(endpoint, payload)
        assert reply is not None, daemon._with_log(f"no reply to {payload[:80]!r}")
        assert reply["version"] == 1 and isinstance(reply["ok"], bool), reply
        if reply["ok"]:
            ok += 1
        else:
            refused += 1
            assert isinstance(reply["error"], str) and reply["error"], reply
        assert daemon.running
    print(f"\ncontrol socket fuzzing: {PAYLOADS} payloads over REQ, {ok} answered ok, "
          f"{refused} refused with a reason")  # fmt: skip
    assert refused > PAYLOADS // 2
    # Frames still flow (the count arrives with the next counters flush, stats_interval_s).
    status = poll_until(lambda: (s := daemon.ctl("status"))["frames_published"] > published and s,
                        60.0, "no frame published after the fuzzing")  # fmt: skip
    assert all(s["alive"] for s in status["stages"].values())
    assert daemon.metrics().total("edged_stage_restarts_total") == 0


def test_messages_that_are_no_request_are_ignored(daemon: Daemon) -> None:
    endpoint = daemon.control_endpoint
    ctx = zmq.Context.instance()
    # Multipart from REQ: not one request; nothing sensible to answer.
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)
    req.send_multipart([b'{"version": 1, "command": "status"}', b"more"])
    assert not req.poll(1000)
    req.close(0)
    # DEALER without the empty delimiter frame.
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    for _ in range(20):
        dealer.send(b'{"version": 1, "command": "status"}')
    dealer.send_multipart([b"", b"x", b"y"])
    assert not dealer.poll(1000)
    dealer.close(0)
    # Larger than ZMQ_MAXMSGSIZE (1 MiB): ZeroMQ drops the connection, no reply.
    assert ask(endpoint, b"x" * (2 << 20), timeout_ms=1500) is None
    # Garbage straight onto the unix socket: not even a ZMTP greeting.
    path = endpoint[len("ipc://") :]
    rng = random.Random(SEED)
    for _ in range(20):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.connect(path)
            raw.sendall(rng.randbytes(rng.randrange(1, 4096)))
    assert ask(endpoint, b'{"version": 1, "command": "status"}')["ok"] is True
    assert daemon.running and daemon.metrics().total("edged_stage_restarts_total") == 0


@pytest.mark.parametrize("payload", [b"[" * 50_000, b'{"version": ' + b"9" * 5000 + b"}"],
                         ids=["nested-json", "huge-integer"])  # fmt: skip
def test_pathological_json_does_not_kill_the_daemon(daemon: Daemon, payload: bytes) -> None:
    """Runs last in the module: these once killed the supervisor (RecursionError / ValueError
    escaping parse_request), and it then did not even exit: multiprocessing's exit handler
    joined the stage processes, which wait for their parent to go away."""
    if not daemon.running:
        pytest.fail("the daemon is already dead")
    reply = ask(daemon.control_endpoint, payload)
    if reply is None:
        log = daemon.log_tail(5)
        daemon.kill()  # hung: SIGTERM would only wait out stop()'s timeout
        pytest.fail(f"no reply; the daemon stopped serving:\n{log}")
    assert reply["ok"] is False
    assert ask(daemon.control_endpoint, b'{"version": 1, "command": "status"}')["ok"] is True
