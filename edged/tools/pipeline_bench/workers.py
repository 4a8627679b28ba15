"""The contenders run in a fresh worker process each: inference only, a naive loop,
Ultralytics."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edged.tools.pipeline_bench.measure import CpuWindow, PssSampler, log_tail, percentile_summary
from edged.tools.pipeline_bench.settings import PipelineBenchSettings


def _read_frames(source: str, count: int) -> list[Any]:
    import cv2

    cap = cv2.VideoCapture(source)
    frames = []
    try:
        while len(frames) < count:
            ok, image = cap.read()
            if not ok:
                break
            frames.append(image)
    finally:
        cap.release()
    if not frames:
        raise RuntimeError(f"{source}: no frame could be read")
    return frames


def video_info(source: str) -> dict[str, Any]:
    import cv2

    cap = cv2.VideoCapture(source)
    try:
        if not cap.isOpened():
            raise RuntimeError(f"{source}: cannot open the video")
        return {
            "path": str(source),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "fps": float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
            "frame_count": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        }
    finally:
        cap.release()


def _backend_options(spec: dict[str, Any]) -> Any:
    """The daemon's options for this backend, with the benchmark's thread budget."""
    from edged.tools.backend_choice import options_for

    return options_for(spec["backend"], spec["threads"], spin_wait=spec["spin_wait"])


def worker_inference(spec: dict[str, Any]) -> dict[str, Any]:
    """The inference-only limit: the daemon's session options and in-place outputs."""
    import numpy as np
    import psutil

    from edged.backends.base import load_backend
    from edged.preprocess import TensorWriter

    options = _backend_options(spec)
    backend = load_backend(spec["backend"], Path(spec["model"]), options, warmup_runs=0)
    writer = TensorWriter(backend.input.layout)
    tensors = []
    for image in _read_frames(spec["source"], 4):
        tensor = np.empty(backend.input.shape, backend.input.dtype)
        writer.write(image, tensor)
        tensors.append(tensor)
    outputs = [np.empty(s, np.float32) for s in backend.output_shapes]
    in_place = getattr(backend, "static_outputs", False) and hasattr(backend, "infer_into")
    run = (lambda t: backend.infer_into(t, outputs)) if in_place else backend.infer  # type: ignore[attr-defined]
    for i in range(spec["warmup"]):
        run(tensors[i % len(tensors)])
    n = spec["frames"] or 200
    window = CpuWindow(psutil.Process())
    latencies = []
    window.begin()
    for i in range(n):
        t0 = time.perf_counter()
        run(tensors[i % len(tensors)])
        latencies.append((time.perf_counter() - t0) * 1000)
    window.end()
    w_ = window.result()
    return {
        **w_,
        "frames": n,
        "fps": round(n / w_["window_s"], 2),
        "e2e_ms": percentile_summary(latencies),
        "infer_ms": percentile_summary(latencies),
        "added_ms": percentile_summary([0.0] * n),
        "precision": backend.precision,
        "executed_precision": getattr(backend, "executed_precision", backend.precision),
        "intra_op_threads": spec["effective_threads"],
    }


def worker_naive(spec: dict[str, Any]) -> dict[str, Any]:
    """read → letterbox → infer → decode + NMS, sequentially, in one process."""
    import cv2
    import psutil

    from edged.postprocess.decoders import DecodeParams
    from edged.tools.runner import ModelRunner

    options = _backend_options(spec)
    runner = ModelRunner(spec["model"], options, DecodeParams(), backend=spec["backend"])
    cap = cv2.VideoCapture(spec["source"])
    warmup, limit = spec["warmup"], spec["frames"]
    e2e, infer, added, read = [], [], [], []
    window = CpuWindow(psutil.Process())
    n = 0
    try:
        while limit is None or n < warmup + limit:
            if n == warmup:
                window.begin()
            r0 = time.perf_counter()
            ok, image = cap.read()
            if not ok:
                break
            t0 = time.perf_counter()
            took = runner.timed_detect(image)
            if n >= warmup:
                e2e.append(took.total * 1000)
                infer.append(took.infer * 1000)
                added.append((took.total - took.infer) * 1000)
                read.append((t0 - r0) * 1000)
            n += 1
    finally:
        cap.release()
    window.end()
    if not e2e:
        raise RuntimeError(f"the video has no more than {warmup} frames (the warm-up)")
    w = window.result()
    return {
        **w,
        "frames": len(e2e),
        "fps": round(len(e2e) / w["window_s"], 2),
        "e2e_ms": percentile_summary(e2e),
        "infer_ms": percentile_summary(infer),
        "added_ms": percentile_summary(added),
        "read_ms": percentile_summary(read),
        "precision": runner.backend.precision,
        "intra_op_threads": spec["effective_threads"],
    }


def _limit_ort_threads(threads: int) -> None:
    """Give every ONNX Runtime session Ultralytics creates ``threads`` intra-op threads."""
    import onnxruntime as ort

    original = ort.InferenceSession

    class Session(original):  # type: ignore[misc, valid-type]
        def __init__(self, path: Any, sess_options: Any = None, *args: Any, **kwargs: Any):
            if sess_options is None:
                sess_options = ort.SessionOptions()
            sess_options.intra_op_num_threads = threads
            super().__init__(path, sess_options, *args, **kwargs)

    ort.InferenceSession = Session  # type: ignore[misc]


def worker_ultralytics(spec: dict[str, Any]) -> dict[str, Any]:
    """``YOLO(model).predict(source=video, stream=True)`` with Ultralytics' own defaults."""
    import psutil

    threads = spec["effective_threads"]
    _limit_ort_threads(threads)
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(threads)
    # An ONNX file, or an Ultralytics export folder (its OpenVINO INT8 IR + metadata.yaml).
    model = YOLO(spec["ultralytics_model"], task="detect")
    warmup, limit = spec["warmup"], spec["frames"]
    e2e, infer, added, gaps = [], [], [], []
    window = CpuWindow(psutil.Process())
    n = 0
    stream = model.predict(
        source=spec["source"], stream=True, verbose=False, device="cpu", imgsz=spec["imgsz"]
    )
    last = time.perf_counter()
    for result in stream:
        now = time.perf_counter()
        if n == warmup:
            window.begin()
        elif n > warmup:
            gaps.append((now - last) * 1000)
        if n >= warmup:
            s = result.speed
            total = s["preprocess"] + s["inference"] + s["postprocess"]
            e2e.append(total)
            infer.append(s["inference"])
            added.append(total - s["inference"])
        n += 1
        last = now
        if limit is not None and n >= warmup + limit:
            break
    window.end()
    with contextlib.suppress(Exception):
        stream.close()
    if len(e2e) < 2:
        raise RuntimeError(f"Ultralytics yielded only {n} results")
    w = window.result()
    # The window runs from the warm-up's last result to the last one: len(e2e) - 1 frames.
    return {
        **w,
        "frames": len(e2e),
        "fps": round((len(e2e) - 1) / w["window_s"], 2),
        "e2e_ms": percentile_summary(e2e),
        "infer_ms": percentile_summary(infer),
        "added_ms": percentile_summary(added),
        "frame_interval_ms": percentile_summary(gaps),
        "precision": spec["precision"],
        "intra_op_threads": threads,
        "ultralytics_version": __import__("ultralytics").__version__,
    }


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "inference": worker_inference,
    "naive": worker_naive,
    "ultralytics": worker_ultralytics,
}


def _worker_main(kind: str, spec_path: str, result_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = {"status": "ok", **WORKERS[kind](spec)}
    except Exception as exc:  # reported, not raised: the other contenders still run
        import traceback

        traceback.print_exc()
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    Path(result_path).write_text(json.dumps(result))
    return 0 if result["status"] == "ok" else 1


def run_worker(
    kind: str, spec: dict[str, Any], settings: PipelineBenchSettings, workdir: Path
) -> dict[str, Any]:
    """Run one contender in a fresh process, sampling its PSS from here."""
    spec_path = workdir / f"{kind}.spec.json"
    result_path = workdir / f"{kind}.result.json"
    log_path = workdir / f"{kind}.log"
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "edged.tools.pipeline_bench",
        "--worker",
        kind,
        "--spec",
        str(spec_path),
        "--result",
        str(result_path),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "YOLO_VERBOSE": "False"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        sampler = PssSampler(proc.pid, settings.sample_interval_s).start()
        try:
            proc.wait(settings.timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            sampler.stop()
    if not result_path.exists():
        return {
            "status": "failed",
            "reason": f"worker exited {proc.returncode} without a "
            f"result; log tail:\n{log_tail(log_path)}",
        }
    result = json.loads(result_path.read_text())
    if result.get("status") == "ok":
        result.update(sampler.in_window(result["window_start"], result["window_end"]))
    else:
        result["log_tail"] = log_tail(log_path)
    return result
