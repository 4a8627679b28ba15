"""CPU ↔ Hailo hot swap through the real pipeline, with the hailo_platform test double.

The daemon's processes import ``tests/fakes/hailo_platform`` (same call surface as HailoRT's
InferModel API, NMS-by-class outputs, async callbacks); everything else is real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.daemon import VIDEO, Daemon, poll_until, require
from tests.fakes.fixtures import fake_env, write_hef

pytestmark = pytest.mark.integration

# One fake detection, normalised to the 640×640 HEF input: class 2 (car), centre of the image.
FAKE_DETECTION = [2, 0.40, 0.30, 0.60, 0.70, 0.9]


@pytest.fixture
def hailo_models(tmp_path: Path, variant_dir: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copyfile(variant_dir / "yolov5n.onnx", root / "yolov5n.onnx")
    write_hef(root / "yolov8s_h8l.hef", arch="HAILO8L")
    write_hef(root / "yolov8s_h8.hef", arch="HAILO8")
    manifest = {
        "name": "yolo",
        "labels": "coco80",
        "variants": {
            "fp32": {"backend": "onnxruntime", "path": "yolov5n.onnx"},
            "hailo": {"backend": "hailo", "path": "yolov8s_h8l.hef", "precision": "int8"},
            "hailo8": {"backend": "hailo", "path": "yolov8s_h8.hef", "precision": "int8"},
        },
    }
    (root / "yolo.yaml").write_text(yaml.safe_dump(manifest))
    return root


# With the ORT rewrites the CPU model takes uint8 NHWC like the HEF; without them it takes float
# NCHW, and the frames in flight at the switch are letterboxed again for the other format.
@pytest.mark.parametrize("rewrites", [True, False], ids=["same-input-format", "reletterbox"])
def test_swap_cpu_to_hailo_and_back(tmp_path: Path, hailo_models: Path, rewrites: bool):
    env = fake_env(EDGED_FAKE_HAILO_DETECTIONS=json.dumps([FAKE_DETECTION]))
    config = {"inference": {"onnxruntime": {"graph_rewrites": rewrites}}}
    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--loop",
                "--manifest", str(hailo_models / "yolo.yaml"),
                "--models-dir", str(hailo_models), config=config, env=env) as daemon:  # fmt: skip
        daemon.wait_ready()
        sub = daemon.subscriber()
        reply = daemon.ctl("swap", "hailo")
        assert reply["ok"], reply
        first = reply["first_seq"]

        def hailo_message():
            got = daemon.receive(sub, timeout=10)
            assert got is not None, daemon.log_tail()
            message = got[1]
            return message if message["seq"] >= first else None

        message = poll_until(hailo_message, 60, daemon.log_tail, interval=0)
        assert message["model"] == {"name": "yolo", "variant": "hailo", "backend": "hailo",
                                    "precision": "int8"}  # fmt: skip
        # The NMS-by-class box, letterbox undone: 768×432 source → scale 5/6, pad_y 140.
        [det] = message["detections"]
        assert det["label"] == "car" and det["confidence"] == pytest.approx(0.9)
        x1, y1, x2, y2 = det["box"]
        assert x1 == pytest.approx(0.30 * 640 * 1.2, abs=1) and x2 == pytest.approx(537.6, abs=1)
        assert y1 == pytest.approx((0.40 * 640 - 140) * 1.2, abs=1)
        assert y2 == pytest.approx((0.60 * 640 - 140) * 1.2, abs=1)

        # The supervisor reads the chip temperature at scrape time while Hailo serves.
        assert daemon.metrics().value("edged_hailo_temperature_celsius") == pytest.approx(52.5)

        # The Hailo-8 HEF on a Hailo-8L device is refused; the NPU variant keeps serving.
        reply = daemon.ctl("swap", "hailo8")
        assert not reply["ok"] and "different Hailo chip" in reply["error"], reply
        assert daemon.ctl("status")["model"]["variant"] == "hailo"

        reply = daemon.ctl("swap", "fp32")
        assert reply["ok"], reply
        back = reply["first_seq"]
        poll_until(lambda: (m := daemon.receive(sub, 10)) and m[1]["seq"] >= back
                   and m[1]["model"]["backend"] == "onnxruntime", 60, daemon.log_tail,
                   interval=0)  # fmt: skip
        assert "edged_hailo_temperature_celsius" not in daemon.metrics().names()
        assert daemon.stop() == 0


def test_a_hailo_failure_mid_stream_reloads_the_model_and_frames_flow_again(
    tmp_path: Path, hailo_models: Path
):
    """HailoRT shuts a configured model's pipeline down on an error; the inference stage loads
    the model again (no stage restart, no swap) instead of failing every later frame."""
    env = fake_env(EDGED_FAKE_HAILO_DETECTIONS=json.dumps([FAKE_DETECTION]),
                   EDGED_FAKE_HAILO_FAIL_AT="30")  # fmt: skip
    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--loop",
                "--manifest", str(hailo_models / "yolo.yaml"), "--variant", "hailo",
                "--models-dir", str(hailo_models), env=env) as daemon:  # fmt: skip
        daemon.wait_ready()
        scrape = daemon.wait_metric("edged_model_reloads_total", lambda v: v >= 1, 60,
                                    result="ok")  # fmt: skip
        assert scrape.value("edged_model_reloads_total", result="failed") == 0
        # The failed frame (and any that came before the reload finished), counted as errors
        # with the stage's next counters flush.
        errors = daemon.wait_metric("edged_frames_total", lambda v: v >= 1, 10, stage="infer",
                                    outcome="error").value("edged_frames_total", stage="infer",
                                                           outcome="error")  # fmt: skip
        published = daemon.ctl("status")["frames_published"]
        poll_until(lambda: daemon.ctl("status")["frames_published"] > published + 20, 60,
                   daemon.log_tail)  # fmt: skip
        after = daemon.metrics()
        assert after.value("edged_frames_total", stage="infer", outcome="error") == errors
        assert after.total("edged_stage_restarts_total") == 0
        assert daemon.ctl("status")["model"]["variant"] == "hailo"
        assert "loaded again" in daemon.log_text()
        assert daemon.stop() == 0
