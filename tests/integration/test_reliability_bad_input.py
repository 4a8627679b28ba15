"""Bad input everywhere gets a clear error and no crash.

- Invalid config files: ``edged config check`` and ``edged run --config`` both exit non-zero and
  print each problem as ``field.path: reason``; never a traceback.
- Broken models at start-up (truncated, empty, not ONNX, wrong input shape, wrong output layout):
  ``edged run`` exits non-zero with one line saying why; nothing is left running, no shared
  memory is left behind. Tiny ONNX models with the odd shapes are made with onnx.helper.
- Frames the pipeline cannot take (larger than pipeline.max_frame_width/height): counted as
  capture errors, reported in the log (not once per frame), the daemon keeps serving.
- Security defaults: the metrics endpoint and the publisher bind loopback unless configured.

Malformed control requests: tests/integration/test_reliability_control.py and
tests/unit/test_fuzz_control.py.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml

from edged.backends import BackendError
from edged.config import EdgedConfig, InferenceConfig
from edged.models import resolve_single_file
from edged.pipeline.model_loader import load_model
from tests.daemon import REPO_ROOT, VIDEO, YOLOV5N, Daemon, require

pytestmark = pytest.mark.integration


def edged(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged.cli", *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=timeout)  # fmt: skip


def own_segments(pid: int) -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith(f"edged_{pid}_")}


# -- configs ------------------------------------------------------------------------------------

BAD_CONFIGS = {
    "types-and-ranges": (
        "source:\n  mode: sometimes\n  reconnect:\n    jitter: 3\nhttp:\n  port: lots\n"
        "pipeline: 5\n",
        ["source.mode", "source.reconnect.jitter", "http.port", "pipeline"],
    ),
    "unknown-fields": ("sourcee:\n  uri: x\npublish:\n  hwm: 3\n", ["sourcee", "publish.hwm"]),
    "yaml-syntax": ("source:\n  uri: [unclosed\n", ["line 3"]),
    "lossless-stream": ("source:\n  uri: rtsp://cam/x\n  mode: lossless\n", ["source.mode"]),
    "unauthenticated-tcp-control": ("control:\n  endpoint: tcp://0.0.0.0:5556\n", ["control"]),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_invalid_configs_name_each_field_and_never_trace_back(tmp_path: Path, name: str) -> None:
    text, paths = BAD_CONFIGS[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    check = edged("config", "check", str(path))
    run = edged("run", "--config", str(path), "--runtime-dir", str(tmp_path / "run"))
    for result, code in ((check, 2), (run, 2)):
        assert result.returncode == code, result
        assert "Traceback" not in result.stderr + result.stdout
        assert f"{path}: invalid configuration" in result.stderr, result.stderr
        for field in paths:
            assert f"  {field}" in result.stderr, (field, result.stderr)
    assert not (tmp_path / "run").exists(), "a refused config must not start anything"


# -- models -------------------------------------------------------------------------------------


def tiny_model(path: Path, in_shape: list, out_shape: list, *, in_type: str = "float",
               inputs: int = 1, out_runtime: list | None = None) -> Path:  # fmt: skip
    """A valid ONNX graph with the given input/output signature: Y = Expand(mean(X), shape)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = {"float": TensorProto.FLOAT, "uint8": TensorProto.UINT8}[in_type]
    ins = [helper.make_tensor_value_info(f"images{i or ''}", elem, in_shape) for i in range(inputs)]
    nodes = []
    src = "images"
    if in_type != "float":
        nodes.append(helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT))
        src = "f"
    nodes.append(helper.make_node("ReduceMean", [src], ["m"], keepdims=0))
    nodes.append(helper.make_node("Expand", ["m", "shape"], ["output0"]))
    shape = numpy_helper.from_array(np.array(out_runtime or out_shape, np.int64), "shape")
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, "tiny", ins, [out], initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


BAD_MODELS = {
    # name: (builder, words the one-line reason must contain)
    "truncated": (lambda p: p.write_bytes(require(YOLOV5N).read_bytes()[:300_000]),
                  "cannot load the model"),
    "empty": (lambda p: p.write_bytes(b""), "cannot load the model"),
    "not-onnx": (lambda p: p.write_text("this is not a model\n" * 100), "cannot load the model"),
    "dynamic-input": (lambda p: tiny_model(p, [1, 3, "H", "W"], [1, 100, 85]),
                      "unsupported input shape"),
    "grey-input": (lambda p: tiny_model(p, [1, 1, 64, 64], [1, 100, 85]),
                   "unsupported input shape"),
    "uint8-nchw-input": (lambda p: tiny_model(p, [1, 3, 64, 64], [1, 100, 85], in_type="uint8"),
                         "must be a static 1×H×W×3"),
    "two-inputs": (lambda p: tiny_model(p, [1, 3, 64, 64], [1, 100, 85], inputs=2),
                   "expected one image input"),
    "classifier-output": (lambda p: tiny_model(p, [1, 3, 64, 64], [1, 10]),
                          "not a recognised detector layout"),
    "2d-output": (lambda p: tiny_model(p, [1, 3, 64, 64], ["N", 85], out_runtime=[100, 85]),
                  "not a recognised detector layout"),
    "too-few-channels": (lambda p: tiny_model(p, [1, 3, 64, 64], [1, 100, 4]),
                         "not a recognised detector layout"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_MODELS))
def test_bad_models_are_refused_by_the_loader_with_a_reason(tmp_path: Path, name: str) -> None:
    build, reason = BAD_MODELS[name]
    path = tmp_path / f"{name}.onnx"
    build(path)
    with pytest.raises(BackendError) as info:
        load_model(resolve_single_file(path, None), InferenceConfig(), 1, 0)
    message = str(info.value)
    assert reason in message and path.name in message
    assert "\n" not in message, "the reason must fit one log line"


def test_a_good_tiny_model_loads(tmp_path: Path) -> None:
    """The builder itself makes loadable models: the refusals above are about their shapes."""
    path = tiny_model(tmp_path / "ok.onnx", [1, 3, 64, 64], [1, 100, 85])
    backend, model = load_model(resolve_single_file(path, None), InferenceConfig(), 1, 0)
    assert (model.input_width, model.output_layout) == (64, "yolov5")
    backend.close()


def run_until_exit(tmp_path: Path, model: Path, timeout: float = 60) -> tuple[int, str, Daemon]:
    daemon = Daemon(tmp_path, "--source", "synthetic:", model=model)
    with daemon:
        deadline = time.monotonic() + timeout
        while daemon.running and time.monotonic() < deadline:
            daemon.processes()  # remember every process for the leftover check in stop()
            time.sleep(0.05)
        assert not daemon.running, daemon._with_log(f"still running after {timeout}s")
        code = daemon.stop(timeout=10)  # already exited: checks that no process is left
    return code, daemon.log_text(), daemon


@pytest.mark.parametrize("name", ["truncated", "dynamic-input", "classifier-output"])
def test_edged_run_refuses_a_bad_model_in_one_line_and_leaves_nothing(tmp_path, name) -> None:
    build, reason = BAD_MODELS[name]
    path = tmp_path / f"{name}.onnx"
    build(path)
    code, log, daemon = run_until_exit(tmp_path / "d", path)
    assert code != 0
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "cannot start:" in line]
    assert len(lines) == 1 and reason in lines[0] and path.name in lines[0], log
    assert own_segments(daemon.pid) == set()


@pytest.mark.parametrize(
    ("shape", "reason"),
    [("output-34MB", "more than pipeline.max_output_mb"), ("input-2688", "the tensor ring holds")],
)
def test_a_model_too_big_for_the_rings_is_refused_at_start(tmp_path, shape, reason) -> None:
    """Used to load and then fail every frame (an error line, or a traceback, per frame)."""
    if shape == "output-34MB":
        path = tiny_model(tmp_path / "big.onnx", [1, 3, 64, 64], [1, 100_000, 85])
    else:
        # Fed as uint8 after the load-time rewrite: 2688² × 3 bytes > the 1280² float slot.
        path = tiny_model(tmp_path / "big.onnx", [1, 3, 2688, 2688], [1, 100, 85])
    code, log, daemon = run_until_exit(tmp_path / "d", path)
    assert code != 0 and "Traceback" not in log
    lines = [line for line in log.splitlines() if "cannot start:" in line]
    assert len(lines) == 1 and reason in lines[0], log
    assert own_segments(daemon.pid) == set()


# -- frames -------------------------------------------------------------------------------------


def test_frames_larger_than_the_ring_are_errors_not_crashes(tmp_path: Path) -> None:
    """The 768×432 video through a pipeline configured for 640×360 frames at most."""
    config = {"pipeline": {"max_frame_width": 640, "max_frame_height": 360}}
    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--loop", config=config) as daemon:
        daemon.wait_for_log("larger than pipeline.max_frame_width/height", timeout=60)
        scrape = daemon.wait_metric("edged_frames_total", lambda v: v >= 30, timeout=30,
                                    stage="capture", outcome="error")  # fmt: skip
        assert scrape.value("edged_frames_total", stage="capture", outcome="ok") == 0
        assert daemon.probe("/healthz")[0] == 200
        status, reason = daemon.probe("/readyz")
        assert status == 503 and "no frame published" in reason
        log = daemon.log_text()
        assert "Traceback" not in log
        # Rate-limited: every refused frame is counted, but the per-frame error line appears
        # once, then once per 10 s with a count -- far fewer lines than refused frames.
        errors = scrape.value("edged_frames_total", stage="capture", outcome="error")
        per_frame = [line for line in log.splitlines() if "; refused" in line]
        assert per_frame, "no refused-frame line logged"
        assert len(per_frame) * 10 <= errors, (len(per_frame), errors)
        assert "768x432" in log
        assert daemon.metrics().total("edged_stage_restarts_total") == 0
        assert daemon.stop() == 0


# Fixed bytes, not os.urandom: FFmpeg opens about 1 random file in 40 (and decodes a garbage
# frame from 1 in 150), so fresh random bytes made this test a lottery. Seed 37's bytes open
# with opencv-python-headless' FFmpeg but hold no frame (the capture stage's "opened but no
# frame" path); the text cannot be opened at all. Either way: retried, or a batch run fails.
JUNK = {
    "junk-text.mp4": b"this is not a video\n" * 10_000,
    "junk-probed.mp4": random.Random(37).randbytes(200_000),
}


@pytest.mark.parametrize("name", JUNK)
def test_an_unreadable_video_file_is_retried_not_fatal(tmp_path: Path, name: str) -> None:
    junk = tmp_path / name
    junk.write_bytes(JUNK[name])
    config = {"source": {"reconnect": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5}}}
    with Daemon(tmp_path / "d", "--source", str(junk), config=config) as daemon:
        daemon.wait_for_log("source unavailable (attempt 2)", timeout=60)
        assert daemon.probe("/healthz")[0] == 200
        assert daemon.probe("/readyz")[0] == 503
        assert "Traceback" not in daemon.log_text()
        assert daemon.stop() == 0


@pytest.mark.parametrize("name", ["missing.mp4", *JUNK])
def test_a_batch_run_over_a_file_that_cannot_be_read_fails_at_once(tmp_path: Path, name) -> None:
    """Lossless + exit-at-end is a batch job: waiting will not make the file appear."""
    path = tmp_path / name
    if name in JUNK:
        path.write_bytes(JUNK[name])
    with Daemon(tmp_path / "d", "--source", str(path), "--mode", "lossless", "--exit-at-end") as d:
        assert d.proc is not None and d.proc.wait(60) == 1
        log = d.log_text()
        assert "capture stage failed: " in log and str(path) in log
        assert "retrying" not in log and "Traceback" not in log


# -- security defaults --------------------------------------------------------------------------


def test_defaults_bind_loopback_only() -> None:
    config = EdgedConfig()
    assert config.http.host == "127.0.0.1"
    assert config.publish.endpoint.startswith("tcp://127.0.0.1:")
    assert config.control.endpoint is None  # ipc:// in the private runtime dir


def test_a_running_daemon_listens_on_loopback_only(tmp_path: Path) -> None:
    """No --http-host flag and a config that only moves ports: every listening socket of every
    edged process is on 127.0.0.1; the control socket is a 0600 unix socket."""
    daemon = Daemon(tmp_path, "--source", "synthetic:")
    # drop the harness's explicit --http-host: the default must be loopback on its own
    i = daemon.argv.index("--http-host")
    del daemon.argv[i : i + 2]
    config = tmp_path / "ports.yaml"
    config.write_text(yaml.safe_dump({"http": {"port": daemon.http_port}}))
    daemon.argv += ["--config", str(config)]
    with daemon:
        daemon.wait_ready()
        listening = []
        for proc in daemon.processes():
            try:
                listening += [c.laddr for c in proc.net_connections("inet")
                              if c.status == psutil.CONN_LISTEN]  # fmt: skip
            except psutil.NoSuchProcess:
                continue
        assert {a.port for a in listening} >= {daemon.http_port, daemon.publish_port}
        assert {a.ip for a in listening} == {"127.0.0.1"}, listening
        assert (daemon.runtime_dir / "control.sock").stat().st_mode & 0o777 == 0o600
        assert daemon.runtime_dir.stat().st_mode & 0o777 == 0o700
        assert daemon.stop() == 0
