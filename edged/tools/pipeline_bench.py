"""``edged bench-pipeline``: the whole pipeline against the tools users reach for, in one run.

Four contenders run back to back on the same model(s), video and ONNX Runtime thread budget:

``inference``
    The inference-only limit: an ONNX Runtime session built with the daemon's own session
    options (``edged.backends.onnxruntime``), outputs bound in place as the daemon does, on
    letterboxed frames of the video; N timed runs after warm-up. Nothing else runs.
``naive``
    A single-process loop a user would write with edged's pure functions: read → letterbox →
    infer → decode + NMS, strictly one after the other.
``ultralytics``
    ``YOLO(model).predict(source=video, stream=True)`` with Ultralytics' defaults, its ONNX
    Runtime session given the same intra-op thread count (only when Ultralytics is installed and
    the model has the Ultralytics layout; by default only for FP32 models).
``edged``
    The real daemon (``python -m edged.cli run``) in a subprocess: ``lossless`` mode measures
    throughput (every frame, back-pressure to the reader); ``realtime`` mode, paced below the
    inference limit (the file's own rate by default), measures the latency edged adds, since in
    lossless mode the end-to-end latency is dominated by frames queueing in front of inference.

For each: FPS, end-to-end latency p50/p99 (from the frame being read to its detections being
ready; the source read itself is not included, as in the daemon's ``latency_ms.end_to_end``), the
latency added on top of inference (end-to-end minus infer, per frame) p50/p99, CPU% (100 = one
core, over every process of the contender, during the timed window only) and the summed PSS of
every process of the contender (largest sample in the timed window). The machine's load and the
CPU time other processes took during each window are recorded too, so that a noisy run shows.

The ratio checks of issue 9 are computed from the values of this one run and written to the
JSON with pass/fail (``null`` when a contender they need did not run).

Every contender but ``edged`` runs in a fresh worker process
(``python -m edged.tools.pipeline_bench --worker KIND ...``), so its memory and CPU are its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

from edged.config import PipelineLayout
from edged.tools.system import NOISY_OTHER_CPU_PERCENT, busy_seconds

RESULT_KIND = "edged.bench.pipeline"
RESULT_VERSION = 1
CONTENDERS = ("inference", "naive", "ultralytics", "edged")
EDGED_MODES = ("lossless", "realtime")
MB = 1_000_000  # PSS is reported in MB (10^6 bytes), the unit of the 400 MB target

# Issue 9's targets (the thresholds the checks compare against).
TARGET_EDGED_VS_INFERENCE = 0.9
TARGET_STATIC_VS_ULTRALYTICS = 2.5
TARGET_FP32_VS_ULTRALYTICS = 1.15
TARGET_ADDED_P50_MS = 3.0
TARGET_ADDED_P99_MS = 10.0
TARGET_DECODE_NMS_P99_MS = 1.0
TARGET_PSS_MB = 400.0


# -- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineBenchSettings:
    models: tuple[str, ...]
    source: str
    threads: int | None = None  # ORT intra-op threads; None: the daemon's derived default
    frames: int | None = None  # timed frames per contender; None: the whole video
    warmup: int = 10  # frames (runs) before timing starts, per contender
    contenders: tuple[str, ...] = CONTENDERS
    edged_modes: tuple[str, ...] = EDGED_MODES
    realtime_fps: float | None = None  # pacing of the realtime run; None: the file's rate
    realtime_frames: int = 240  # timed frames of the realtime run
    ultralytics: str = "fp32"  # run Ultralytics on: fp32 models, all models, none
    spin_wait: bool | str = "auto"  # the daemon's inference.onnxruntime.spin_wait
    layout: str = "fused"  # the daemon's pipeline.layout
    decode_threads: int | None = 1  # the daemon's source.decode_threads (None: FFmpeg's choice)
    # Experiment: niceness added to the daemon's processes other than the inference stage
    # once frames flow (0: leave them alone).
    renice_others: int = 0
    sample_interval_s: float = 1.0  # PSS sampling period
    timeout_s: float = 900.0  # per contender
    # Shared machine: before each contender wait (up to this long) for a 2 s stretch in which
    # the machine was busy less than quiet_percent of one CPU. 0: start at once.
    quiet_wait_s: float = 0.0
    quiet_percent: float = 15.0
    micro_runs: int = 1000  # decode + NMS micro-benchmark runs per scenario


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    import numpy as np

    if len(values) == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, (50, 90, 99))
    return {
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(a.mean()), 3),
        "max": round(float(a.max()), 3),
    }


# -- measuring processes -------------------------------------------------------------------------


def _tree(root: Any) -> list[Any]:
    import psutil

    procs = [root]
    with contextlib.suppress(psutil.Error):
        procs += root.children(recursive=True)
    return procs


def tree_cpu_seconds(root: Any) -> float:
    """user + system CPU seconds of ``root`` and every live descendant (all threads)."""
    return sum(cpu for _name, cpu in tree_cpu_by_process(root).values())


def tree_cpu_by_process(root: Any) -> dict[int, tuple[str, float]]:
    """pid → (name, user + system CPU seconds) for ``root`` and every live descendant."""
    import psutil

    found = {}
    for p in _tree(root):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            found[p.pid] = (_process_label(p), t.user + t.system)
    return found


def _process_label(p: Any) -> str:
    """``edged: infer`` → ``infer``; the supervisor and helpers by their role."""
    import psutil

    try:
        cmdline = p.cmdline()
    except psutil.Error:
        return "?"
    text = " ".join(cmdline)
    if text.startswith("edged: "):
        return text[len("edged: ") :].strip()
    if "edged.cli" in text:
        return "supervisor"
    if "resource_tracker" in text:
        return "resource_tracker"
    return p.name()


def tree_pss_bytes(root: Any) -> tuple[int, int]:
    """(summed PSS, number of processes) of ``root`` and its descendants."""
    by_process = tree_pss_by_process(root)
    return sum(by_process.values()), len(by_process)


def tree_pss_by_process(root: Any) -> dict[str, int]:
    """PSS bytes of ``root`` and each descendant, by role (``infer``, ``supervisor``, ...)."""
    import psutil

    found: dict[str, int] = {}
    for p in _tree(root):
        try:
            pss = p.memory_full_info().pss
        except psutil.Error:
            continue
        label = _process_label(p)
        while label in found:  # two of a kind (e.g. an Ultralytics helper): keep both
            label += "'"
        found[label] = pss
    return found


class PssSampler:
    """Samples the summed PSS of a process tree on a thread: ``(monotonic, bytes, count)``."""

    def __init__(self, pid: int, interval_s: float = 1.0) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval_s
        self.samples: list[tuple[float, int, int]] = []
        self.by_process: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)

    def start(self) -> PssSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        by_process = tree_pss_by_process(self.root)
        if by_process:
            now = time.monotonic()
            self.samples.append((now, sum(by_process.values()), len(by_process)))
            self.by_process.append((now, by_process))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def in_window(self, start: float, end: float) -> dict[str, Any]:
        """Largest and mean PSS sampled between ``start`` and ``end`` (all samples if none)."""
        inside = [s for s in self.samples if start <= s[0] <= end] or self.samples
        if not inside:
            return {"pss_mb": None, "pss_mb_mean": None, "processes": None, "pss_samples": 0}
        peak = max(inside, key=lambda s: s[1])
        breakdown = next((b for t, b in self.by_process if t == peak[0]), {})
        return {
            "pss_mb": round(peak[1] / MB, 1),
            "pss_mb_mean": round(sum(s[1] for s in inside) / len(inside) / MB, 1),
            "pss_mb_by_process": {k: round(v / MB, 1) for k, v in sorted(breakdown.items())},
            "processes": max(s[2] for s in inside),
            "pss_samples": len(inside),
        }


class CpuWindow:
    """CPU of a process tree and of the whole machine between :meth:`begin` and :meth:`end`."""

    def __init__(self, root: Any, per_process: bool = False) -> None:
        self.root = root
        self.per_process = per_process
        self._by0: dict[int, tuple[str, float]] = {}
        self._by1: dict[int, tuple[str, float]] = {}
        self.start = self.stop = 0.0
        self._cpu0 = self._cpu1 = self._busy0 = self._busy1 = 0.0
        self._load0: tuple[float, ...] = ()
        self._load1: tuple[float, ...] = ()

    def begin(self) -> None:
        self._by0 = tree_cpu_by_process(self.root)
        self._cpu0 = sum(cpu for _name, cpu in self._by0.values())
        self._busy0 = busy_seconds()
        self._load0 = os.getloadavg()
        self.start = time.monotonic()

    def end(self) -> None:
        self.stop = time.monotonic()
        self._by1 = tree_cpu_by_process(self.root)
        self._cpu1 = sum(cpu for _name, cpu in self._by1.values())
        self._busy1 = busy_seconds()
        self._load1 = os.getloadavg()

    def result(self) -> dict[str, Any]:
        wall = max(self.stop - self.start, 1e-9)
        own = self._cpu1 - self._cpu0
        other = max(0.0, (self._busy1 - self._busy0) - own)
        return {
            "window_start": self.start,
            "window_end": self.stop,
            "window_s": round(wall, 3),
            "cpu_percent": round(100 * own / wall, 1),
            "other_cpu_percent": round(100 * other / wall, 1),
            "load_before": [round(x, 2) for x in self._load0],
            "load_after": [round(x, 2) for x in self._load1],
            **({"cpu_percent_by_process": self.by_process(wall)} if self.per_process else {}),
        }

    def by_process(self, wall: float) -> dict[str, float]:
        """CPU% of each process that lived through the window, by its role."""
        shares: dict[str, float] = {}
        for pid, (name, cpu1) in self._by1.items():
            if pid in self._by0:
                shares[name] = shares.get(name, 0.0) + 100 * (cpu1 - self._by0[pid][1]) / wall
        return {k: round(v, 1) for k, v in sorted(shares.items())}


# -- workers (run in a fresh process each) -------------------------------------------------------


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


def _ort_options(spec: dict[str, Any]) -> Any:
    from edged.config import OnnxRuntimeOptions

    return OnnxRuntimeOptions(intra_op_threads=spec["threads"], spin_wait=spec["spin_wait"])


def worker_inference(spec: dict[str, Any]) -> dict[str, Any]:
    """The inference-only limit: the daemon's session options and in-place outputs."""
    import numpy as np
    import psutil

    from edged.backends.onnxruntime import OnnxRuntimeBackend, session_options
    from edged.preprocess import TensorWriter

    options = _ort_options(spec)
    backend = OnnxRuntimeBackend(Path(spec["model"]), options)
    writer = TensorWriter(backend.input.layout)
    tensors = []
    for image in _read_frames(spec["source"], 4):
        tensor = np.empty(backend.input.shape, backend.input.dtype)
        writer.write(image, tensor)
        tensors.append(tensor)
    outputs = [np.empty(s, np.float32) for s in backend.output_shapes]
    run = (
        (lambda t: backend.infer_into(t, outputs)) if backend.static_outputs else backend.infer  # type: ignore[assignment]
    )
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
        "e2e_ms": _percentiles(latencies),
        "infer_ms": _percentiles(latencies),
        "added_ms": _percentiles([0.0] * n),
        "precision": backend.precision,
        "intra_op_threads": session_options(options).intra_op_num_threads,
    }


def worker_naive(spec: dict[str, Any]) -> dict[str, Any]:
    """read → letterbox → infer → decode + NMS, sequentially, in one process."""
    import cv2
    import psutil

    from edged.backends.onnxruntime import session_options
    from edged.postprocess.decoders import DecodeParams
    from edged.tools.runner import ModelRunner

    options = _ort_options(spec)
    runner = ModelRunner(spec["model"], options, DecodeParams())
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
            tensor, box = runner.preprocess(image)
            t1 = time.perf_counter()
            outputs = runner.infer(tensor)
            t2 = time.perf_counter()
            runner.postprocess(outputs, box)
            t3 = time.perf_counter()
            if n >= warmup:
                e2e.append((t3 - t0) * 1000)
                infer.append((t2 - t1) * 1000)
                added.append(((t3 - t0) - (t2 - t1)) * 1000)
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
        "e2e_ms": _percentiles(e2e),
        "infer_ms": _percentiles(infer),
        "added_ms": _percentiles(added),
        "read_ms": _percentiles(read),
        "precision": runner.backend.precision,
        "intra_op_threads": session_options(options).intra_op_num_threads,
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
    model = YOLO(spec["model"], task="detect")
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
        "e2e_ms": _percentiles(e2e),
        "infer_ms": _percentiles(infer),
        "added_ms": _percentiles(added),
        "frame_interval_ms": _percentiles(gaps),
        "precision": "fp32" if "int8" not in Path(spec["model"]).stem else "int8",
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
            f"result; log tail:\n{_tail(log_path)}",
        }
    result = json.loads(result_path.read_text())
    if result.get("status") == "ok":
        result.update(sampler.in_window(result["window_start"], result["window_end"]))
    else:
        result["log_tail"] = _tail(log_path)
    return result


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- the daemon ----------------------------------------------------------------------------------


def daemon_config(
    settings: PipelineBenchSettings,
    model: str,
    mode: str,
    workdir: Path,
    endpoint: str,
    realtime_fps: float | None,
) -> dict[str, Any]:
    """The YAML config the benchmark starts ``edged run`` with."""
    source: dict[str, Any] = {
        "uri": str(settings.source),
        "mode": mode,
        "decode_threads": settings.decode_threads,
    }
    if mode == "realtime" and realtime_fps:
        source["fps"] = float(realtime_fps)
    ort: dict[str, Any] = {"spin_wait": settings.spin_wait}
    if settings.threads is not None:
        ort["intra_op_threads"] = settings.threads
    return {
        "source": source,
        "model": {"path": str(Path(model).resolve()), "manifest": None},
        "inference": {"onnxruntime": ort},
        "publish": {"endpoint": endpoint, "wait_for_subscribers": 1, "format": "json"},
        "http": {"enabled": False},
        "pipeline": {"exit_at_end": True, "layout": settings.layout},
        "runtime": {"runtime_dir": str(workdir / "run"), "log_level": "WARNING"},
    }


def run_edged(
    settings: PipelineBenchSettings,
    model: str,
    mode: str,
    workdir: Path,
    frames: int | None,
    realtime_fps: float | None,
) -> dict[str, Any]:
    """Start the daemon, subscribe, collect ``frames`` messages after the warm-up, stop it."""
    import psutil
    import yaml
    import zmq

    workdir.mkdir(parents=True, exist_ok=True)
    endpoint = f"ipc://{workdir}/pub.sock"
    config_path = workdir / "edged.yaml"
    config = daemon_config(settings, model, mode, workdir, endpoint, realtime_fps)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / "daemon.log"
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"detections.")
    sub.connect(endpoint)
    argv = [sys.executable, "-m", "edged.cli", "run", "--config", str(config_path)]
    warmup = settings.warmup
    wanted = None if frames is None else warmup + frames
    arrivals: list[float] = []
    messages: list[dict[str, Any]] = []
    failure = None
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        root = psutil.Process(proc.pid)
        sampler = PssSampler(proc.pid, settings.sample_interval_s).start()
        window = CpuWindow(root, per_process=True)
        deadline = time.monotonic() + settings.timeout_s
        stopped = False
        try:
            while True:
                if time.monotonic() > deadline:
                    failure = f"timed out after {settings.timeout_s:.0f}s"
                    break
                if not sub.poll(200):
                    if proc.poll() is not None:
                        break  # exited (end of the video, or a failure) and nothing is left
                    continue
                _topic, payload = sub.recv_multipart()
                now = time.monotonic()
                if len(messages) == 0 and settings.renice_others:
                    _renice_all_but_infer(root, settings.renice_others)
                if len(messages) == warmup:
                    window.begin()
                messages.append(json.loads(payload))
                arrivals.append(now)
                if wanted is not None and len(messages) == wanted and not stopped:
                    window.end()
                    stopped = True
                    proc.send_signal(signal.SIGTERM)  # drain; frames after these are ignored
                elif not stopped and len(messages) > warmup and now - window.stop >= 0.25:
                    # Which message is the last one is known only once the daemon has exited
                    # (and its CPU times are gone): keep the window's end up to date.
                    window.end()
        finally:
            sub.close(0)
            try:
                code = proc.wait(60.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            sampler.stop()
    if code not in (0, None) and not failure:
        failure = f"edged exited with {code}"
    counted = messages[warmup:wanted]
    if failure or len(counted) < 2:
        reason = failure or f"only {len(messages)} messages published (warm-up {warmup})"
        return {"status": "failed", "reason": reason, "log_tail": _tail(log_path)}
    times = arrivals[warmup : warmup + len(counted)]
    latency = [m["latency_ms"] for m in counted]
    e2e = [x["end_to_end"] for x in latency]
    infer = [x["infer"] for x in latency]
    seqs = [m["seq"] for m in counted]
    w = window.result()
    w["window_start"], w["window_end"] = times[0], times[-1]
    stages = sorted({k for x in latency for k in x if k != "end_to_end"})
    result = {
        "status": "ok",
        **w,
        "frames": len(counted),
        "fps": round((len(counted) - 1) / max(times[-1] - times[0], 1e-9), 2),
        "e2e_ms": _percentiles(e2e),
        "infer_ms": _percentiles(infer),
        "added_ms": _percentiles([a - b for a, b in zip(e2e, infer, strict=True)]),
        "stage_ms": {s: _percentiles([x.get(s, 0.0) for x in latency]) for s in stages},
        "hand_off_ms": _percentiles(
            [
                x["end_to_end"] - sum(v for k, v in x.items() if k not in ("end_to_end", "capture"))
                for x in latency
            ]
        ),
        "skipped_frames": (seqs[-1] - seqs[0] + 1) - len(seqs),
        "precision": counted[-1]["model"]["precision"],
        "realtime_fps": realtime_fps if mode == "realtime" else None,
        "exit_code": code,
    }
    result.update(sampler.in_window(times[0], times[-1]))
    per_frame = w["window_s"] * 1000 / max(1, len(counted) - 1) / 100
    result["cpu_ms_per_frame_by_process"] = {
        k: round(v * per_frame, 2) for k, v in w.get("cpu_percent_by_process", {}).items()
    }
    return result


def _renice_all_but_infer(root: Any, increment: int) -> None:
    import psutil

    for p in _tree(root):
        if _process_label(p) in ("infer", "resource_tracker"):
            continue
        with contextlib.suppress(psutil.Error):
            for thread in p.threads():  # niceness is per thread on Linux
                os.setpriority(os.PRIO_PROCESS, thread.id, p.nice() + increment)


# -- decode + NMS micro-benchmark ----------------------------------------------------------------


def synthetic_yolov8_output(
    scenario: str, num_classes: int = 80, anchors: int = 8400, size: int = 640, seed: int = 0
) -> Any:
    """A ``1×(4+C)×N`` YOLOv8 output with a known score distribution.

    ``typical``: a scene of 20 objects, each seen by 15 stride-8 anchors around its centre with
    scores 0.3–0.9 and jittered boxes (what NMS exists for), the rest background below 0.05.
    ``crowded``: 100 objects the same way (~1500 candidates above threshold).
    ``dense``: every anchor above the threshold with a random box and class (the worst case).
    ``empty``: nothing above threshold (what an untrained model produces).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.zeros((1, 4 + num_classes, anchors), np.float32)
    out[0, 0:2] = rng.uniform(0, size, (2, anchors))
    out[0, 2:4] = rng.uniform(4, 120, (2, anchors))
    if scenario == "empty":
        out[0, 4:] = rng.uniform(0, 0.01, (num_classes, anchors))
        return out
    if scenario == "dense":
        out[0, 4:] = rng.uniform(0, 0.2, (num_classes, anchors))
        cls = rng.integers(0, num_classes, anchors)
        out[0, 4 + cls, np.arange(anchors)] = rng.uniform(0.3, 0.95, anchors)
        return out
    objects = {"typical": 20, "crowded": 100}[scenario]
    out[0, 4:] = rng.uniform(0, 0.05, (num_classes, anchors))
    side = size // 8  # the stride-8 map: its anchors come first
    per = 15
    for _ in range(objects):
        cx, cy = rng.uniform(50, size - 50, 2)
        w, h = rng.uniform(20, 180, 2)
        # Anchors around the object, as a detector's are (and so within reach of a YOLOv8 DFL).
        gx, gy = int(cx // 8), int(cy // 8)
        near = [
            y * side + x
            for y in range(max(gy - 2, 0), min(gy + 3, side))
            for x in range(max(gx - 2, 0), min(gx + 3, side))
        ]
        members = rng.choice(near, per, replace=False)
        cls = int(rng.integers(0, num_classes))
        out[0, 0, members] = cx + rng.normal(0, 3, per)
        out[0, 1, members] = cy + rng.normal(0, 3, per)
        out[0, 2, members] = w * rng.uniform(0.9, 1.1, per)
        out[0, 3, members] = h * rng.uniform(0.9, 1.1, per)
        out[0, 4 + cls, members] = rng.uniform(0.3, 0.9, per)
    return out


YOLOV8_HEAD = (80, 40, 20)  # feature-map sides of a 640×640 YOLOv8 (strides 8, 16, 32)


def yolov8_head_of(output: Any, reg_max: int = 16) -> tuple[list[Any], Any]:
    """The raw head outputs (box distributions, class logits per scale) that decode to about
    ``output`` (a ``1×(4+C)×8400`` YOLOv8 output), and the head's parameters: the input of
    the decoder the daemon uses when it cut the model at its head."""
    import numpy as np

    from edged.postprocess.raw_heads import YOLOV8, HeadScale, RawHead

    classes = output.shape[1] - 4
    scores = np.clip(output[0, 4:], 1e-6, 1 - 1e-6)
    logits = np.log(scores / (1 - scores)).astype(np.float32)
    bins = np.arange(reg_max, dtype=np.float32)
    outputs, scales, start = [], [], 0
    for side in YOLOV8_HEAD:
        stride, cells = 640 / side, side * side
        ys, xs = np.divmod(np.arange(cells), side)
        cx, cy, w, h = output[0, :4, start : start + cells]
        ax, ay = (xs + 0.5) * stride, (ys + 0.5) * stride
        sides = np.stack([ax - (cx - w / 2), ay - (cy - h / 2), cx + w / 2 - ax, cy + h / 2 - ay])
        distance = np.clip(sides / stride, 0, reg_max - 1)  # 4×cells, in strides
        # A peaked distribution around each distance: the DFL's expectation lands on it.
        box = -4.0 * (bins[None, :, None] - distance[:, None, :]) ** 2
        outputs.append(box.reshape(1, 4 * reg_max, side, side).astype(np.float32))
        outputs.append(logits[:, start : start + cells].reshape(1, classes, side, side))
        scales.append(HeadScale(side, side, stride))
        start += cells
    return outputs, RawHead(YOLOV8, classes, tuple(scales), reg_max)


def decode_nms_microbench(
    runs: int = 1000, scenarios: Sequence[str] = ("empty", "typical", "crowded", "dense")
) -> dict[str, Any]:
    """p50/p99 of ``edged.postprocess.decoders.decode`` (decode + NMS + unletterbox) in ms.

    Both wall-clock time and this thread's CPU time per call are recorded: on a shared machine
    the wall-clock tail is mostly time spent preempted by other processes, the CPU-time tail is
    what the code costs (the two agree on a quiet machine).
    """
    import numpy as np

    from edged.postprocess.decoders import DecodeParams, OutputLayout, decode
    from edged.preprocess import letterbox_geometry

    box, _, _ = letterbox_geometry(1280, 720, 640, 640)
    params = DecodeParams()
    results = {}
    cases = [(s, False) for s in scenarios] + [(s, True) for s in scenarios]
    for scenario, raw in cases:
        output = synthetic_yolov8_output(scenario)
        outputs, head = yolov8_head_of(output) if raw else ([output], None)
        layout = OutputLayout.RAW_HEAD if raw else OutputLayout.YOLOV8
        n = runs if scenario != "dense" else max(10, runs // 20)
        for _ in range(min(20, n)):
            detections = decode(outputs, layout, params, (640, 640), box, head)
        times, cpu = [], []
        for _ in range(n):
            c0 = time.thread_time_ns()
            t0 = time.perf_counter()
            detections = decode(outputs, layout, params, (640, 640), box, head)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time_ns() - c0) / 1e6)
        best = output[0, 4:].max(axis=0)
        results[f"{scenario} (raw head)" if raw else scenario] = {
            "anchors": int(output.shape[2]),
            "candidates": int(np.count_nonzero(best > params.conf_threshold)),
            "detections": len(detections),
            "runs": n,
            **_percentiles(times),
            "cpu_ms": _percentiles(cpu),
        }
    return {"load": [round(x, 2) for x in os.getloadavg()], "scenarios": results}


# -- the run -------------------------------------------------------------------------------------


def model_info(path: str) -> dict[str, Any]:
    """Precision, output shape and whether Ultralytics can run it, from the ONNX file."""
    import onnx

    from edged.backends.onnxruntime import precision_of

    model = onnx.load(str(path), load_external_data=False)
    metadata = {p.key: p.value for p in model.metadata_props}
    shapes = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
    inputs = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    yolov8_like = bool(shapes) and len(shapes[0]) == 3 and 0 < shapes[0][1] < shapes[0][2]
    return {
        "path": str(path),
        "name": Path(path).stem,
        "precision": precision_of(metadata),
        "output_shapes": shapes,
        "imgsz": inputs[0][2] if inputs and len(inputs[0]) == 4 else 640,
        "ultralytics_layout": yolov8_like and {"names", "stride", "task"} <= set(metadata),
        "size_bytes": Path(path).stat().st_size,
    }


def effective_threads(threads: int | None) -> int:
    """The intra-op thread count the daemon's backend uses for ``threads`` (None: default)."""
    from edged.backends.onnxruntime import session_options
    from edged.config import OnnxRuntimeOptions

    return session_options(OnnxRuntimeOptions(intra_op_threads=threads)).intra_op_num_threads


def _ultralytics_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ultralytics") is not None


def run_pipeline_bench(
    settings: PipelineBenchSettings, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run every contender for every model; the full result record (JSON-serialisable)."""
    say = progress or (lambda _msg: None)
    for c in settings.contenders:
        if c not in CONTENDERS:
            raise ValueError(f"unknown contender {c!r} (known: {', '.join(CONTENDERS)})")
    video = video_info(settings.source)
    threads = effective_threads(settings.threads)
    started = time.time()
    record: dict[str, Any] = {
        "kind": RESULT_KIND,
        "version": RESULT_VERSION,
        "started": started,
        "settings": asdict(settings),
        "video": video,
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_start": [round(x, 2) for x in os.getloadavg()],
        },
        "intra_op_threads": threads,
        "models": [],
        "results": [],
    }
    with contextlib.suppress(ImportError):
        import onnxruntime

        record["machine"]["onnxruntime"] = onnxruntime.__version__
    say("decode + NMS micro-benchmark")
    record["decode_nms"] = decode_nms_microbench(settings.micro_runs)
    workdir = Path(tempfile.mkdtemp(prefix="edged-bench-pipeline-"))
    try:
        for model in settings.models:
            info = model_info(model)
            names = {m["name"] for m in record["models"]}
            if info["name"] in names:  # same file name in two folders: keep results apart
                info["name"] = f"{info['name']}#{len(record['models']) + 1}"
            record["models"].append(info)
            for contender in settings.contenders:
                modes = settings.edged_modes if contender == "edged" else ("",)
                for mode in modes:
                    entry = {
                        "model": info["name"],
                        "precision": info["precision"],
                        "contender": contender,
                        "mode": mode or None,
                    }
                    skip = _skip_reason(contender, info, settings)
                    if skip:
                        record["results"].append({**entry, "status": "skipped", "reason": skip})
                        continue
                    say(f"{info['name']} ({info['precision']}): {contender} {mode}".rstrip())
                    waited = wait_for_quiet(settings.quiet_wait_s, settings.quiet_percent)
                    outcome = _run_one(
                        contender, mode, info, settings, threads, video, record, workdir
                    )
                    record["results"].append({**entry, **outcome, "quiet_wait_s": waited})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    record["machine"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    record["duration_s"] = round(time.time() - started, 1)
    record["noisy"] = any(
        (r.get("other_cpu_percent") or 0) > NOISY_OTHER_CPU_PERCENT for r in record["results"]
    )
    record["checks"] = compute_checks(record)
    return record


def wait_for_quiet(max_wait_s: float, percent: float, step_s: float = 2.0) -> float | None:
    """Wait until the machine was busy < ``percent`` % (of one CPU) for ``step_s``; seconds
    waited, or None when it never got that quiet within ``max_wait_s`` (0: do not wait)."""
    if max_wait_s <= 0:
        return 0.0
    start = time.monotonic()
    while True:
        busy0 = busy_seconds()
        time.sleep(step_s)
        if 100 * (busy_seconds() - busy0) / step_s < percent:
            return round(time.monotonic() - start, 1)
        if time.monotonic() - start >= max_wait_s:
            return None


def _skip_reason(contender: str, info: dict[str, Any], s: PipelineBenchSettings) -> str | None:
    if contender != "ultralytics":
        return None
    if s.ultralytics == "none":
        return "disabled (--ultralytics none)"
    if s.ultralytics == "fp32" and info["precision"] != "fp32":
        return "Ultralytics runs on FP32 models only (--ultralytics all to include this one)"
    if not info["ultralytics_layout"]:
        return "the model does not have the Ultralytics layout/metadata"
    if not _ultralytics_installed():
        return "Ultralytics is not installed"
    return None


def _run_one(
    contender: str,
    mode: str,
    info: dict[str, Any],
    s: PipelineBenchSettings,
    threads: int,
    video: dict[str, Any],
    record: dict[str, Any],
    workdir: Path,
) -> dict[str, Any]:
    frames = s.frames
    if contender == "edged":
        if mode == "realtime":
            fps = s.realtime_fps or video["fps"] or 10.0
            limit = _inference_fps(record, info["name"])
            if s.realtime_fps is None and limit and fps >= 0.8 * limit:
                fps = round(0.5 * limit, 1)  # pace well below the inference limit
            n = s.realtime_frames if frames is None else min(frames, s.realtime_frames)
            return run_edged(s, info["path"], mode, workdir / f"edged-{mode}", n, fps)
        return run_edged(s, info["path"], mode, workdir / f"edged-{mode}", frames, None)
    if frames is None and contender == "inference":
        frames = max(1, video["frame_count"] - s.warmup) if video["frame_count"] > 0 else 200
    spec = {
        "model": info["path"],
        "source": s.source,
        "threads": s.threads,
        "effective_threads": threads,
        "spin_wait": s.spin_wait,
        "layout": s.layout,
        "warmup": s.warmup,
        "frames": frames,
        "imgsz": info["imgsz"],
    }
    return run_worker(contender, spec, s, workdir)


def _inference_fps(record: dict[str, Any], model: str) -> float | None:
    for r in record["results"]:
        if r["model"] == model and r["contender"] == "inference" and r.get("status") == "ok":
            return r["fps"]
    return None


# -- checks --------------------------------------------------------------------------------------


def _find(
    record: dict[str, Any],
    contender: str,
    *,
    model: str | None = None,
    precision: str | None = None,
    mode: str | None = None,
) -> dict[str, Any] | None:
    for r in record["results"]:
        if r.get("status") != "ok" or r["contender"] != contender:
            continue
        if model is not None and r["model"] != model:
            continue
        if precision is not None and r["precision"] != precision:
            continue
        if mode is not None and r.get("mode") != mode:
            continue
        return r
    return None


def _check(
    name: str, target: str, value: float | None, passed: bool | None, **inputs: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "target": target,
        "value": None if value is None else round(value, 3),
        "passed": passed,
        "inputs": inputs,
    }


def _ratio(a: dict | None, b: dict | None) -> float | None:
    if a is None or b is None or not b.get("fps"):
        return None
    return a["fps"] / b["fps"]


def compute_checks(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 9's targets, evaluated on the figures of this one run (``passed`` None: not run)."""
    checks = []
    for info in record["models"]:
        name, precision = info["name"], info["precision"]
        edged = _find(record, "edged", model=name, mode="lossless")
        inference = _find(record, "inference", model=name)
        ratio = _ratio(edged, inference)
        checks.append(
            _check(
                f"edged_vs_inference_fps[{name}]",
                f">= {TARGET_EDGED_VS_INFERENCE}",
                ratio,
                None if ratio is None else ratio >= TARGET_EDGED_VS_INFERENCE,
                edged_fps=edged and edged["fps"],
                inference_fps=inference and inference["fps"],
                precision=precision,
            )
        )
        latency = _find(record, "edged", model=name, mode="realtime") or edged
        for q, limit in (("p50", TARGET_ADDED_P50_MS), ("p99", TARGET_ADDED_P99_MS)):
            value = None if latency is None else latency["added_ms"][q]
            checks.append(
                _check(
                    f"added_latency_{q}_ms[{name}]",
                    f"<= {limit}",
                    value,
                    None if value is None else value <= limit,
                    mode=latency and latency["mode"],
                    precision=precision,
                )
            )
        pss = None if edged is None else edged.get("pss_mb")
        checks.append(
            _check(
                f"edged_pss_mb[{name}]",
                f"<= {TARGET_PSS_MB}",
                pss,
                None if pss is None else pss <= TARGET_PSS_MB,
                processes=edged and edged.get("processes"),
                precision=precision,
            )
        )
    ultra = _find(record, "ultralytics", precision="fp32")
    for label, precision, target in (
        ("edged_fp32_vs_ultralytics_fp32_fps", "fp32", TARGET_FP32_VS_ULTRALYTICS),
        ("edged_static_vs_ultralytics_fp32_fps", "int8-static", TARGET_STATIC_VS_ULTRALYTICS),
    ):
        # Same model for FP32; for static, its FP32 source is the Ultralytics one (any FP32).
        model = ultra["model"] if ultra and precision == "fp32" else None
        edged = _find(record, "edged", precision=precision, mode="lossless", model=model)
        ratio = _ratio(edged, ultra)
        checks.append(
            _check(
                label,
                f">= {target}",
                ratio,
                None if ratio is None else ratio >= target,
                edged_fps=edged and edged["fps"],
                ultralytics_fps=ultra and ultra["fps"],
                edged_model=edged and edged["model"],
                ultralytics_model=ultra and ultra["model"],
            )
        )
    scenarios = record.get("decode_nms", {}).get("scenarios", {})
    micro, raw = scenarios.get("typical"), scenarios.get("typical (raw head)")
    for label, value in (
        ("decode_nms_p99_ms[typical: 8400 anchors]", micro and micro["p99"]),
        ("decode_nms_cpu_p99_ms[typical: 8400 anchors]", micro and micro["cpu_ms"]["p99"]),
        ("decode_nms_p99_ms[typical: raw head]", raw and raw["p99"]),
        ("decode_nms_cpu_p99_ms[typical: raw head]", raw and raw["cpu_ms"]["p99"]),
    ):
        checks.append(
            _check(
                label,
                f"<= {TARGET_DECODE_NMS_P99_MS}",
                value,
                None if value is None else value <= TARGET_DECODE_NMS_P99_MS,
                candidates=micro and micro["candidates"],
            )
        )
    return checks


# -- output --------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def summary_rows(record: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for r in record["results"]:
        label = r["contender"] + (f" ({r['mode']})" if r.get("mode") else "")
        if r.get("status") != "ok":
            rows.append(
                {
                    "model": r["model"],
                    "precision": r["precision"],
                    "contender": label,
                    "FPS": r.get("status", "?"),
                    "note": r.get("reason", "")[:60],
                }
            )
            continue
        rows.append(
            {
                "model": r["model"],
                "precision": r["precision"],
                "contender": label,
                "frames": _fmt(r["frames"]),
                "FPS": _fmt(r["fps"]),
                "e2e p50": _fmt(r["e2e_ms"]["p50"]),
                "e2e p99": _fmt(r["e2e_ms"]["p99"]),
                "infer p50": _fmt(r["infer_ms"]["p50"]),
                "added p50": _fmt(r["added_ms"]["p50"]),
                "added p99": _fmt(r["added_ms"]["p99"]),
                "CPU%": _fmt(r["cpu_percent"]),
                "PSS MB": _fmt(r.get("pss_mb")),
                "other CPU%": _fmt(r.get("other_cpu_percent")),
            }
        )
    return rows


def print_report(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Not a terminal (a log, CI): wide enough that the table is not squeezed into 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=180)
    columns = [
        "model",
        "precision",
        "contender",
        "frames",
        "FPS",
        "e2e p50",
        "e2e p99",
        "infer p50",
        "added p50",
        "added p99",
        "CPU%",
        "PSS MB",
        "other CPU%",
        "note",
    ]
    rows = summary_rows(record)
    used = [c for c in columns if any(c in r for r in rows)]
    table = Table(
        title=f"edged bench-pipeline — {Path(record['video']['path']).name} "
        f"{record['video']['width']}×{record['video']['height']}, ORT "
        f"{record['intra_op_threads']} threads, {record['machine']['cpus']} CPUs "
        "(latencies in ms)"
    )
    for c in used:
        table.add_column(
            c, justify="left" if c in ("model", "precision", "contender", "note") else "right"
        )
    for r in rows:
        table.add_row(*(escape(r.get(c, "")) for c in used))
    console.print(table)
    micro = Table(title="decode + NMS (edged.postprocess.decoders.decode), YOLOv8 1×84×8400, ms")
    for c in ("scenario", "candidates", "detections", "p50", "p99", "max", "CPU p50", "CPU p99"):
        micro.add_column(c, justify="left" if c == "scenario" else "right")
    for name, m in record["decode_nms"]["scenarios"].items():
        micro.add_row(
            name,
            str(m["candidates"]),
            str(m["detections"]),
            _fmt(m["p50"]),
            _fmt(m["p99"]),
            _fmt(m["max"]),
            _fmt(m["cpu_ms"]["p50"]),
            _fmt(m["cpu_ms"]["p99"]),
        )
    console.print(micro)
    checks = Table(title="issue 9 targets (this run)")
    for c in ("check", "target", "value", "result"):
        checks.add_column(c, justify="left" if c in ("check", "result") else "right")
    for c in record["checks"]:
        verdict = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "not measured"}
        checks.add_row(escape(c["name"]), c["target"], _fmt(c["value"]), verdict[c["passed"]])
    console.print(checks)
    load = record["machine"]
    console.print(
        f"load average {load['load_start']} → {load['load_end']}; {record['duration_s']:.0f}s"
    )
    if record.get("noisy"):
        console.print(
            f"[yellow]warning: other processes used more than "
            f"{NOISY_OTHER_CPU_PERCENT:.0f}% CPU during a timed window "
            "(see other_cpu_percent); rerun on a quiet machine[/]"
        )


# -- command line --------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        "-m",
        action="append",
        default=[],
        required=False,
        help="ONNX model; repeat for several (e.g. FP32 and static INT8)",
    )
    p.add_argument("--source", "-s", help="video file (the same for every contender)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime intra-op threads (default: the daemon's default)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help="timed frames per contender (default: the whole video)",
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed frames first (default 10)")
    p.add_argument("--out", "-o", help="write the JSON result here")
    p.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated subset of {','.join(CONTENDERS)}",
    )
    p.add_argument(
        "--edged-modes",
        default=",".join(EDGED_MODES),
        help="edged runs: lossless (throughput), realtime (added latency)",
    )
    p.add_argument(
        "--realtime-fps",
        type=float,
        default=None,
        help="pacing of the realtime run (default: the file's rate, kept below the "
        "inference limit)",
    )
    p.add_argument(
        "--realtime-frames",
        type=int,
        default=240,
        help="timed frames of the realtime run (default 240)",
    )
    p.add_argument(
        "--ultralytics",
        choices=("fp32", "all", "none"),
        default="fp32",
        help="models to run Ultralytics on (default: FP32 ones)",
    )
    p.add_argument(
        "--spin",
        action=argparse.BooleanOptionalAction,
        default="auto",
        help="let ORT threads spin-wait inside a run (inference.onnxruntime.spin_wait; "
        "default: auto, as in the daemon)",
    )
    p.add_argument(
        "--layout",
        choices=get_args(PipelineLayout),
        default="fused",
        help="the daemon's pipeline.layout (default: fused, as in the daemon)",
    )
    p.add_argument(
        "--decode-threads",
        type=int,
        default=1,
        help="the daemon's source.decode_threads; 0: FFmpeg's choice (default 1, as in the daemon)",
    )
    p.add_argument(
        "--renice-others",
        type=int,
        default=0,
        metavar="N",
        help="experiment: add N to the niceness of the daemon's processes other than the "
        "inference stage once frames flow",
    )
    p.add_argument(
        "--micro-runs",
        type=int,
        default=1000,
        help="decode + NMS micro-benchmark runs per scenario",
    )
    p.add_argument(
        "--micro-only",
        action="store_true",
        help="only the decode + NMS micro-benchmark (no model or video needed)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per contender")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="shared machine: before each contender wait up to S seconds for 2 quiet seconds "
        "(machine busy < --quiet-percent of one CPU)",
    )
    p.add_argument("--quiet-percent", type=float, default=15.0, help=argparse.SUPPRESS)


def settings_from_args(args: argparse.Namespace) -> PipelineBenchSettings:
    return PipelineBenchSettings(
        models=tuple(args.model),
        source=args.source,
        threads=args.threads,
        frames=args.frames,
        warmup=args.warmup,
        contenders=tuple(c for c in args.contenders.split(",") if c),
        edged_modes=tuple(m for m in args.edged_modes.split(",") if m),
        realtime_fps=args.realtime_fps,
        realtime_frames=args.realtime_frames,
        ultralytics=args.ultralytics,
        spin_wait=args.spin,
        layout=args.layout,
        decode_threads=args.decode_threads or None,
        renice_others=args.renice_others,
        timeout_s=args.timeout,
        quiet_wait_s=args.quiet_wait,
        quiet_percent=args.quiet_percent,
        micro_runs=args.micro_runs,
    )


def run_command(args: argparse.Namespace) -> int:
    """The ``edged bench-pipeline`` handler: 0 ok, 2 user error."""
    if args.micro_only:
        micro = decode_nms_microbench(args.micro_runs)
        print(json.dumps(micro, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(micro, indent=2))
        return 0
    errors = []
    if not args.model:
        errors.append("--model is required")
    for m in args.model:
        if not Path(m).is_file():
            errors.append(f"{m}: no such model file")
    if not args.source or not Path(args.source).is_file():
        errors.append(f"--source {args.source}: no such video file")
    bad = [c for c in args.contenders.split(",") if c and c not in CONTENDERS]
    bad += [m for m in args.edged_modes.split(",") if m and m not in EDGED_MODES]
    if bad:
        errors.append(f"unknown contender/mode: {', '.join(bad)}")
    if errors:
        for e in errors:
            print(f"edged bench-pipeline: {e}", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    record = run_pipeline_bench(settings, progress=lambda m: print(f"… {m}", file=sys.stderr))
    print_report(record)
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2))
        print(f"wrote {args.out}")
    return 0


def register_pipeline_bench(
    subparsers: argparse._SubParsersAction, name: str = "bench-pipeline"
) -> argparse.ArgumentParser:
    """Add ``edged bench-pipeline`` (or another ``name``) to ``edged``'s sub-commands."""
    p = subparsers.add_parser(
        name,
        help="the pipeline vs inference-only, a naive loop, Ultralytics (FPS, latency, CPU, PSS)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_arguments(p)
    p.set_defaults(func=run_command)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edged bench-pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker_main(args.worker, args.spec, args.result)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
