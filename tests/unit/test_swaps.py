"""The supervisor's swap bookkeeping (edged.pipeline.swaps) on a controlled clock: one swap at a
time, the reply once the old model's frames are out, timeouts, late results, and what the
supervisor adopts. The sockets are the two callables it is given; Telemetry is the real one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.config import EdgedConfig
from edged.metrics import Metrics
from edged.models import resolve_from_config
from edged.pipeline.messages import (
    INFER,
    PREPROCESS,
    SWAP_TIMEOUT_S,
    Command,
    ModelDescriptor,
    Swap,
    SwapDone,
    SwapFailed,
    UseModel,
)
from edged.pipeline.supervisor import Supervisor
from edged.pipeline.swaps import MAX_TIMED_OUT_SWAPS, SwapCoordinator, SwapRequest
from edged.pipeline.telemetry import Telemetry
from tests.stage_events import published_frame, stats

OLD = ModelDescriptor("a/default/1", "a", "default", "onnxruntime", "fp32", 640, 640, "NHWC",
                      "uint8", "yolov5", ("person",))  # fmt: skip
NEW = ModelDescriptor("b/default/2", "b", "default", "onnxruntime", "fp32", 640, 640, "NHWC",
                      "uint8", "yolov5", ("person",))  # fmt: skip
CLIENT = b"client-1"


def config_with_model(tmp_path: Path, model_file: str) -> EdgedConfig:
    path = tmp_path / model_file
    path.write_bytes(b"not loaded in these tests")
    return EdgedConfig.model_validate({
        "source": {"uri": "synthetic:"},
        "model": {"path": str(path)},
        "runtime": {"runtime_dir": str(tmp_path / "run")},
    })  # fmt: skip


class Harness:
    """A coordinator wired to recording callables and a clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.telemetry = Telemetry(Metrics(CollectorRegistry()), clock=lambda: self.now)
        self.telemetry.set_model(OLD)
        self.sent: list[tuple[str, Command]] = []
        self.replies: list[tuple[bytes | None, dict]] = []
        self.swaps = SwapCoordinator(
            self.telemetry,
            self.send,
            lambda who, body: self.replies.append((who, json.loads(body))),
            clock=lambda: self.now,
        )

    def send(self, stage: str, command: Command) -> bool:
        self.sent.append((stage, command))
        return True  # the stage is connected

    def request_id(self) -> str:
        stage, command = self.sent[-1]
        assert stage == INFER and isinstance(command, Swap)
        return command.request_id

    def publish(self, seq: int) -> None:
        self.telemetry.handle("publish", stats(published_frame(seq, self.now, OLD.key)))


@pytest.fixture
def h() -> Harness:
    return Harness()


def success(request_id: str, resolved, last_old_seq: int = 10) -> SwapDone:
    return SwapDone(request_id, NEW, resolved, duration=0.5, last_old_seq=last_old_seq)


def test_the_reply_waits_until_the_old_models_frames_are_out(h: Harness, tmp_path: Path) -> None:
    model = config_with_model(tmp_path, "b.onnx").model
    h.swaps.request("default", CLIENT, model)
    adopted = h.swaps.on_result(success(h.request_id(), resolve_from_config(model), 10))
    assert adopted is not None and adopted.resolved.path.name == "b.onnx"
    assert adopted.model_config is None  # a client's swap, not a reload's
    assert h.telemetry.state.model == NEW
    assert h.sent[-1] == (PREPROCESS, UseModel(NEW))
    h.publish(9)
    h.swaps.check()
    assert h.replies == [] and h.swaps.in_progress  # frame 10 (old model) not out yet
    h.publish(10)
    h.swaps.check()
    assert h.replies == [(CLIENT, {"version": 1, "ok": True, "active": "default", "model": "b",
                                   "first_seq": 11, "duration_s": 0.5})]  # fmt: skip
    assert not h.swaps.in_progress


def test_an_idle_pipeline_gets_its_reply_without_frames(h: Harness, tmp_path: Path) -> None:
    model = config_with_model(tmp_path, "b.onnx").model
    h.swaps.request("default", CLIENT, model)
    h.swaps.on_result(success(h.request_id(), resolve_from_config(model), 10))
    h.swaps.check()
    assert h.replies and h.replies[0][1]["ok"] is True  # nothing ever published: nothing to wait


def test_one_swap_at_a_time_and_bad_variants_refused_at_once(h: Harness, tmp_path: Path) -> None:
    model = config_with_model(tmp_path, "b.onnx").model
    h.swaps.request("default", CLIENT, model)
    h.swaps.request("default", b"client-2", model)
    assert h.replies == [(b"client-2", {"version": 1, "ok": False, "active": "default",
                                        "error": "another swap is in progress"})]  # fmt: skip
    h.swaps.cancel("inference stage restarted during the swap")
    h.swaps.request("static", b"client-3", model)  # a single file has no variants
    assert [r[1]["ok"] for r in h.replies] == [False, False, False]
    assert "needs a model manifest" in h.replies[-1][1]["error"]
    assert not h.swaps.in_progress


def test_a_failed_load_is_refused_with_the_stages_reason(h: Harness, tmp_path: Path) -> None:
    h.swaps.request("default", CLIENT, config_with_model(tmp_path, "b.onnx").model)
    adopted = h.swaps.on_result(SwapFailed(h.request_id(), "model file is truncated"))
    assert adopted is None and h.telemetry.state.model == OLD
    assert h.replies[-1][1]["error"] == "model file is truncated"


def test_a_late_success_of_a_timed_out_reload_is_followed_and_adopted(
    h: Harness, tmp_path: Path
) -> None:
    reloaded = config_with_model(tmp_path, "b.onnx")
    h.swaps.request("default", None, reloaded.model, reloaded)
    request_id = h.request_id()
    h.now += SWAP_TIMEOUT_S + 1
    h.swaps.check()
    assert not h.swaps.in_progress
    assert h.replies == [(None, {"version": 1, "ok": False, "active": "default",
                                 "error": "swap timed out"})]  # fmt: skip
    adopted = h.swaps.on_result(success(request_id, resolve_from_config(reloaded.model)))
    assert adopted is not None and adopted.model_config == reloaded.model
    assert h.telemetry.state.model == NEW and h.sent[-1] == (PREPROCESS, UseModel(NEW))
    assert h.swaps.timed_out == {}


def test_a_late_result_nobody_asked_for_moves_the_model_not_the_config(
    h: Harness, tmp_path: Path
) -> None:
    resolved = resolve_from_config(config_with_model(tmp_path, "b.onnx").model)
    adopted = h.swaps.on_result(success("someone-else", resolved))
    assert adopted is not None and adopted.model_config is None
    assert h.telemetry.state.model == NEW  # the inference stage serves it: follow
    assert h.swaps.on_result(SwapFailed("x", "late failure")) is None


def test_only_the_last_few_timed_out_swaps_are_kept(h: Harness, tmp_path: Path) -> None:
    model = config_with_model(tmp_path, "b.onnx").model
    ids = []
    for _ in range(MAX_TIMED_OUT_SWAPS + 2):
        h.swaps.request("default", None, model)
        ids.append(h.request_id())
        h.now += SWAP_TIMEOUT_S + 1
        h.swaps.check()
    assert list(h.swaps.timed_out) == ids[-MAX_TIMED_OUT_SWAPS:]


def test_the_supervisor_adopts_a_reloads_model_section(tmp_path: Path) -> None:
    """What the supervisor does with an Adopted: the next reload compares with the new model
    section, and a restarted inference process loads the new file."""
    supervisor = Supervisor(config_with_model(tmp_path, "a.onnx"),
                            metrics=Metrics(CollectorRegistry()))  # fmt: skip
    reloaded = config_with_model(tmp_path, "b.onnx")
    resolved = resolve_from_config(reloaded.model)
    # A reload's swap, sent to the inference stage (tests/unit/test_supervisor_requests.py
    # runs that part on real sockets).
    supervisor.swaps.pending = SwapRequest(None, "default", 0.0, resolved, "r1", reloaded)
    supervisor._adopt(supervisor.swaps.on_result(success("r1", resolved)))
    assert supervisor.config.model == reloaded.model
    assert supervisor.resolved.path.name == "b.onnx"
