"""Control requests around a swap, on the supervisor's real sockets (control ROUTER, stage
channel ROUTER, a datagram socket standing in for systemd). The inference stage is played by the
test: a real process that is alive, and a DEALER with its identity that answers swaps.

Covers: a swap the inference stage cannot receive is refused at once (not after the 300 s swap
timeout); a reload during a swap waits for it instead of being dropped; a stop during a swap
answers the waiting client."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
import zmq
from prometheus_client import CollectorRegistry

from edged.config import load_config
from edged.metrics import Metrics
from edged.pipeline.messages import (
    INFER,
    ModelDescriptor,
    Stats,
    Swap,
    SwapDone,
    decode_command,
    encode,
)
from edged.pipeline.supervisor import SHUTTING_DOWN, Supervisor
from edged.pipeline.swaps import STAGE_RESTARTING
from edged.sdnotify import SystemdNotifier
from tests.daemon import poll_until
from tests.systemd_helpers import NotifySocketReceiver

OLD = ModelDescriptor("m/a/1", "m", "a", "onnxruntime", "fp32", 640, 640, "NHWC",
                      "uint8", "yolov5", ("person",))  # fmt: skip


def write_config(tmp_path: Path, variant: str) -> Path:
    """A config serving ``variant`` of a manifest with variants a and b (files never loaded)."""
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    for name in ("a", "b"):
        (models / f"{name}.onnx").write_bytes(b"not loaded in these tests")
    variants = {name: {"backend": "onnxruntime", "path": f"{name}.onnx"} for name in ("a", "b")}
    (models / "m.yaml").write_text(yaml.safe_dump({"name": "m", "variants": variants}))
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump({
        "source": {"uri": "synthetic:"},
        "model": {"manifest": str(models / "m.yaml"), "models_dir": str(models),
                  "variant": variant},
        "runtime": {"runtime_dir": str(tmp_path / "run")},
    }))  # fmt: skip
    return path


class Harness:
    def __init__(self, tmp_path: Path, notify: NotifySocketReceiver) -> None:
        self.config_path = write_config(tmp_path, "a")
        self.sup = Supervisor(load_config(self.config_path), self.config_path,
                              Metrics(CollectorRegistry()),
                              SystemdNotifier(notify.environ()))  # fmt: skip
        self.sup.telemetry.set_model(OLD)
        self.sup.systemd.published_ready = True  # past READY=1: reloads tell systemd
        self.sup._prepare_runtime_dir()
        self.sup.channel.bind()
        self.sup.control.start()
        self.ctx = zmq.Context.instance()
        self.clients: list[zmq.Socket] = []
        self.stage: zmq.Socket | None = None

    def infer_process_alive(self) -> None:
        """A real process in the inference stage's place (it never connects)."""
        proc = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        proc.start()
        self.sup.processes.by_name[self.sup.processes.process_of(INFER)] = proc

    def connect_stage(self) -> zmq.Socket:
        """The inference stage's command channel; connected once the supervisor hears it."""
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, INFER.encode())
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.sup.endpoints.supervisor)
        sock.send(encode(Stats({}, 0)))
        poll_until(lambda: self.sup._recv_event(), 10, "the supervisor never heard the stage")
        self.stage = sock
        return sock

    def request(self, command: str, variant: str | None = None) -> zmq.Socket:
        client = self.ctx.socket(zmq.REQ)
        client.setsockopt(zmq.LINGER, 0)
        client.connect(self.sup.control.endpoint)
        body = {"version": 1, "command": command, **({"variant": variant} if variant else {})}
        client.send(json.dumps(body).encode())
        self.clients.append(client)
        poll_until(lambda: self.sup.control.socket.poll(0) or None, 10, "request never arrived")
        self.sup._handle_control()
        return client

    def next_swap(self) -> Swap:
        assert self.stage is not None
        assert self.stage.poll(30_000), "no command reached the inference stage"
        command = decode_command(self.stage.recv())
        assert isinstance(command, Swap), command
        return command

    def close(self) -> None:
        for sock in (*self.clients, *([self.stage] if self.stage else [])):
            sock.close(0)
        for proc in self.sup.processes.by_name.values():
            proc.kill()
            proc.join(5)
        self.sup.processes.by_name.clear()
        self.sup.shutdown()


def answer(client: zmq.Socket, timeout_ms: int = 30_000) -> dict | None:
    """The reply; None after ``timeout_ms`` (the default only bounds a hang)."""
    return json.loads(client.recv()) if client.poll(timeout_ms) else None


@pytest.fixture
def notify() -> Iterator[NotifySocketReceiver]:
    with NotifySocketReceiver() as rx:
        yield rx


@pytest.fixture
def h(tmp_path: Path, notify: NotifySocketReceiver) -> Iterator[Harness]:
    harness = Harness(tmp_path, notify)
    yield harness
    harness.close()


def test_a_swap_while_the_inference_stage_is_down_is_refused_at_once(h: Harness) -> None:
    client = h.request("swap", "a")  # no inference process: it died, restart pending
    got = answer(client)
    assert got is not None and got["ok"] is False and got["error"] == STAGE_RESTARTING
    assert not h.sup.swaps.in_progress  # the next swap is not blocked


def test_a_swap_the_inference_stage_cannot_receive_is_refused_at_once(h: Harness) -> None:
    """Its process runs (a restart just spawned it) but it has not connected yet: the command
    would be dropped silently by a plain ROUTER."""
    h.infer_process_alive()
    client = h.request("swap", "a")
    got = answer(client)
    assert got is not None and got["error"] == STAGE_RESTARTING, got
    assert not h.sup.swaps.in_progress


def finish_swap(h: Harness, swap: Swap) -> None:
    assert h.stage is not None
    variant = swap.resolved.variant
    new = ModelDescriptor(f"m/{variant}/2", "m", variant, "onnxruntime", "fp32", 640, 640,
                          "NHWC", "uint8", "yolov5", ("person",))  # fmt: skip
    h.stage.send(encode(SwapDone(swap.request_id, new, swap.resolved, 0.1, -1)))
    poll_until(lambda: h.sup.channel.poll(0) or None, 10, "SwapDone never arrived")
    h.sup._drain_events()
    h.sup._service_requests()  # nothing published: the reply goes out, a waiting reload runs


def test_a_reload_during_a_swap_runs_when_the_swap_ends(
    h: Harness, tmp_path: Path, notify: NotifySocketReceiver
) -> None:
    h.infer_process_alive()
    h.connect_stage()
    swapper = h.request("swap", "a")
    first = h.next_swap()
    # The model section changes and SIGHUP comes while the swap loads.
    write_config(tmp_path, "b")
    h.sup._reload_requested = True
    h.sup._service_requests()
    reloader = h.request("reload")  # and a control client's reload too
    notify.wait_for(lambda m: m.get("RELOADING") == "1", timeout=5)
    assert answer(reloader, 0) is None  # waiting, not refused
    assert not any(m.get("READY") == "1" for m in notify.receive())

    finish_swap(h, first)
    assert answer(swapper)["ok"] is True
    second = h.next_swap()  # the SIGHUP's reload: the new model section
    assert second.resolved.path.name == "b.onnx"
    notify.wait_for(lambda m: m.get("READY") == "1", timeout=5)  # told once it ran
    finish_swap(h, second)
    assert h.sup.config.model.variant == "b"
    # The control client's reload ran last: the file now matches, nothing to swap.
    got = answer(reloader)
    assert got is not None and got["ok"] is True and got["changed"] == [], got


def test_a_stop_during_a_swap_answers_the_waiting_client(h: Harness) -> None:
    h.infer_process_alive()
    h.connect_stage()
    swapper = h.request("swap", "a")
    h.next_swap()
    h.sup._begin_drain()  # what SIGTERM starts
    got = answer(swapper)
    assert got is not None and got["ok"] is False and got["error"] == SHUTTING_DOWN
    late = h.request("swap", "a")  # during the drain: refused, not started
    assert answer(late)["error"] == SHUTTING_DOWN
