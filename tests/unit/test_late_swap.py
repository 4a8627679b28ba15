"""A swap the supervisor gave up on (SWAP_TIMEOUT_S) that succeeds later is followed, and a
reload's swap then also adopts the reloaded config's model section (so the next reload does
not swap again). Driven through the supervisor's own handlers; no processes are started."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from edged.config import EdgedConfig
from edged.metrics import Metrics
from edged.models import resolve_from_config
from edged.pipeline.messages import SWAP_TIMEOUT_S, ModelDescriptor, StageEvent
from edged.pipeline.supervisor import MAX_TIMED_OUT_SWAPS, PendingReply, Supervisor

NEW_MODEL = ModelDescriptor("b/default/2", "b", "default", "onnxruntime", "fp32", 640, 640,
                            "NHWC", "uint8", "yolov5", ("person",))  # fmt: skip


def _config(tmp_path: Path, model_file: str) -> EdgedConfig:
    path = tmp_path / model_file
    path.write_bytes(b"not loaded in this test")
    return EdgedConfig.model_validate({
        "source": {"uri": "synthetic:"},
        "model": {"path": str(path)},
        "runtime": {"runtime_dir": str(tmp_path / "run")},
    })  # fmt: skip


def _timed_out_reload_swap(tmp_path: Path, request_id: str) -> tuple[Supervisor, EdgedConfig]:
    supervisor = Supervisor(_config(tmp_path, "a.onnx"), metrics=Metrics(CollectorRegistry()))
    reloaded = _config(tmp_path, "b.onnx")
    started = time.monotonic() - SWAP_TIMEOUT_S - 1.0
    supervisor.pending = PendingReply(b"", "default", started, resolve_from_config(reloaded.model),
                                      request_id, config=reloaded)  # fmt: skip
    supervisor._check_pending_swap()
    assert supervisor.pending is None  # given up on, refused to the (absent) client
    return supervisor, reloaded


def _late_success(request_id: str, reloaded: EdgedConfig) -> StageEvent:
    return StageEvent("inference", "swap_result", {
        "request_id": request_id, "ok": True, "model": NEW_MODEL,
        "resolved": resolve_from_config(reloaded.model),
    })  # fmt: skip


def test_a_late_reload_swap_adopts_the_reloaded_model_section(tmp_path: Path) -> None:
    supervisor, reloaded = _timed_out_reload_swap(tmp_path, "r1")
    assert supervisor.config.model.path.endswith("a.onnx")

    supervisor._on_swap_result(_late_success("r1", reloaded))

    assert supervisor.config.model == reloaded.model
    assert supervisor.resolved.path.name == "b.onnx"
    assert supervisor.telemetry.state.model == NEW_MODEL
    assert supervisor.timed_out_swaps == {}


def test_a_late_result_of_an_unknown_request_moves_the_model_but_not_the_config(
    tmp_path: Path,
) -> None:
    supervisor, reloaded = _timed_out_reload_swap(tmp_path, "r1")

    supervisor._on_swap_result(_late_success("someone-else", reloaded))

    assert supervisor.config.model.path.endswith("a.onnx")  # no config known for that request
    assert supervisor.resolved.path.name == "b.onnx"  # but the stage serves b: follow it


def test_only_the_last_few_timed_out_swaps_are_kept(tmp_path: Path) -> None:
    supervisor, reloaded = _timed_out_reload_swap(tmp_path, "r0")
    for n in range(1, MAX_TIMED_OUT_SWAPS + 3):
        supervisor.pending = PendingReply(b"", "default", time.monotonic() - SWAP_TIMEOUT_S - 1,
                                          resolve_from_config(reloaded.model), f"r{n}",
                                          config=reloaded)  # fmt: skip
        supervisor._check_pending_swap()
    assert len(supervisor.timed_out_swaps) == MAX_TIMED_OUT_SWAPS
    assert "r0" not in supervisor.timed_out_swaps
