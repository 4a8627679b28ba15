"""Bad model files through the real daemon: odd ``names`` metadata, external data outside the
model's directory.

At start: one "cannot start:" line naming the file and the reason, exit status 2 (systemd's
RestartPreventExitStatus: a restart would read the same file), nothing left running. While
running: the swap is refused with the reason and the old model keeps serving.
Before: the odd names crashed the inference stage with a traceback (exit 1, restarted forever).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.daemon import YOLOV5N, Daemon, poll_until, require
from tests.model_files import HUGE, external_model, with_names
from tests.tools.models import tiny_yolov8

pytestmark = pytest.mark.integration


def run_until_exit(tmp_path: Path, *args: str, model: Path | None) -> tuple[int, str]:
    with Daemon(tmp_path, "--source", "synthetic:", *args, model=model) as daemon:
        poll_until(lambda: not daemon.running, 120, daemon.log_tail, interval=0.05)
        daemon.processes()
        code = daemon.stop(timeout=10)  # already exited: checks that no process is left
        return code, daemon.log_text()


@pytest.mark.parametrize("case", ["yolov5n-huge-names", "tiny-tuple-key", "external-outside"])
def test_a_bad_model_file_stops_the_start_with_exit_2(tmp_path: Path, case: str) -> None:
    if case == "yolov5n-huge-names":
        path = with_names(require(YOLOV5N), tmp_path / f"{case}.onnx", HUGE)
        reason = "metadata 'names'"
    elif case == "tiny-tuple-key":
        tiny = tiny_yolov8(tmp_path / "tiny.onnx")
        path = with_names(tiny, tmp_path / f"{case}.onnx", "{(1,): 2}")
        reason = "metadata 'names'"
    else:
        (tmp_path / "outside").mkdir()
        path = external_model(tmp_path / "models", "../outside/w.bin")
        reason = "resolves outside the model's directory"
    code, log = run_until_exit(tmp_path / "d", model=path)
    assert code == 2, log
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "cannot start:" in line]
    assert len(lines) == 1 and reason in lines[0] and path.name in lines[0], log


def test_a_swap_to_a_bad_model_file_is_refused_and_the_old_one_keeps_serving(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    good = tiny_yolov8(tmp_path / "good.onnx")
    (tmp_path / "outside").mkdir()
    external_model(models, "../outside/w.bin")  # models/external.onnx
    with_names(good, models / "good.onnx", "{0: 'cat', 1: 'dog'}")
    with_names(good, models / "odd-names.onnx", "{(1,): 2}")
    variants = {name: {"backend": "onnxruntime", "path": f"{name}.onnx"}
                for name in ("good", "odd-names", "external")}  # fmt: skip
    (models / "m.yaml").write_text(yaml.safe_dump({"name": "m", "variants": variants}))
    args = ("--manifest", str(models / "m.yaml"), "--models-dir", str(models), "--variant", "good")
    with Daemon(tmp_path / "d", "--source", "synthetic:", *args, model=None) as daemon:
        daemon.wait_ready()
        refusals = {"odd-names": "metadata 'names'",
                    "external": "resolves outside the model's directory"}  # fmt: skip
        for variant, reason in refusals.items():
            reply = daemon.ctl("swap", variant)
            assert not reply["ok"] and reason in reply["error"], reply
            assert reply["active"] == "good"
        before = daemon.ctl("status")["frames_published"]
        poll_until(lambda: daemon.ctl("status")["frames_published"] > before + 5, 60,
                   daemon.log_tail)  # fmt: skip
        assert daemon.ctl("status")["model"]["variant"] == "good"
        assert daemon.metrics().value("edged_model_swaps_total", result="refused") == 2
        assert "Traceback" not in daemon.log_text()
        assert daemon.stop() == 0
