"""The edged daemon as a contender: its config, a run in lossless or realtime mode, its figures."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.backends.registry import backend_for_suffix, plugins
from edged.tools.pipeline_bench.cameras import (
    CAMERA_MODES,
    CAMERAS_PACED_MODE,
    camera_ids,
    cameras_section,
    per_camera,
)
from edged.tools.pipeline_bench.measure import (
    CpuWindow,
    PssSampler,
    log_tail,
    percentile_summary,
    process_label,
    process_tree,
)
from edged.tools.pipeline_bench.settings import PipelineBenchSettings


def model_section(model: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """``model.path`` when the file's suffix picks its backend; else a one-variant manifest
    (an ``.onnx`` on OpenVINO). A manifest's own variant (``edged tune``) runs as configured,
    its manifest options included."""
    if model.get("variant"):
        return {k: model[k] for k in ("manifest", "variant", "models_dir")}
    path = Path(model["path"]).resolve()
    if backend_for_suffix(path) == model["backend"]:
        return {"path": str(path), "manifest": None}
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = workdir / "bench-model.yaml"
    variant = {"backend": model["backend"], "path": str(path)}
    manifest.write_text(json.dumps({"name": path.stem, "variants": {"bench": variant}}))
    return {"manifest": str(manifest), "variant": "bench", "models_dir": str(path.parent)}


def option_set(text: str) -> dict[str, Any]:
    """``requests=2,threads=2`` → {"requests": 2, "threads": 2} (values read as YAML)."""
    from edged.tools.backend_choice import parse_option

    return dict(parse_option(item) for item in text.split(",") if item.strip())


def daemon_config(
    settings: PipelineBenchSettings,
    model: dict[str, Any],
    mode: str,
    workdir: Path,
    endpoint: str,
    realtime_fps: float | None,
    extra: dict[str, Any] | None = None,
    options: str | None = None,
    cameras: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The YAML config the benchmark starts ``edged run`` with (``extra``: more sections, e.g.
    ``monitor`` for ``edged bench-shadow``; ``options``: an ``--edged-options`` set, into the
    model's backend section; ``cameras``: the ``cameras:`` section as given, e.g. streams)."""
    source: dict[str, Any] = {
        "uri": str(settings.source),
        "mode": "realtime" if mode in CAMERA_MODES else mode,
        "decode_threads": settings.decode_threads,
    }
    if mode == "realtime" and realtime_fps:
        source["fps"] = float(realtime_fps)
    inference: dict[str, Any] = {"onnxruntime": {"spin_wait": settings.spin_wait},
                                 "ncnn": {"spin_wait": settings.spin_wait}}  # fmt: skip
    if settings.threads is not None:
        for name, spec in plugins().items():
            if spec.threads_field:
                inference.setdefault(name, {})[spec.threads_field] = settings.threads
    if options:
        inference.setdefault(model["backend"], {}).update(option_set(options))
    if cameras is None and mode in CAMERA_MODES:
        drift = mode == CAMERAS_PACED_MODE
        cameras = cameras_section(source, settings.cameras, realtime_fps, drift)
    return {
        **({"cameras": cameras} if cameras else {"source": source}),
        "model": model_section(model, workdir),
        "inference": inference,
        "publish": {"endpoint": endpoint, "wait_for_subscribers": 1, "format": "json"},
        "http": {"enabled": False},
        "pipeline": {"exit_at_end": True, "layout": settings.layout},
        "runtime": {"runtime_dir": str(workdir / "run"), "log_level": "WARNING"},
        **(extra or {}),
    }


def run_edged(
    settings: PipelineBenchSettings,
    model: dict[str, Any],
    mode: str,
    workdir: Path,
    frames: int | None,
    realtime_fps: float | None,
    extra: dict[str, Any] | None = None,
    options: str | None = None,
) -> dict[str, Any]:
    """Start the daemon, subscribe, collect ``frames`` messages after the warm-up, stop it."""
    workdir.mkdir(parents=True, exist_ok=True)
    endpoint = f"ipc://{workdir}/pub.sock"
    config = daemon_config(settings, model, mode, workdir, endpoint, realtime_fps, extra,
                           options)  # fmt: skip
    warmup = settings.warmup
    wanted = None if frames is None else warmup + frames
    with launched(config, workdir, endpoint, settings) as daemon:
        window = CpuWindow(daemon.root, per_process=True)
        messages, arrivals, failure = _collect(daemon.sub, daemon.proc, daemon.root, window,
                                               settings, wanted)  # fmt: skip
    sampler, code = daemon.sampler, daemon.code
    if code not in (0, None) and not failure:
        failure = f"edged exited with {code}"
    counted = messages[warmup:wanted]
    if failure or len(counted) < 2:
        reason = failure or f"only {len(messages)} messages published (warm-up {warmup})"
        return {"status": "failed", "reason": reason, "log_tail": log_tail(daemon.log_path)}
    times = arrivals[warmup : warmup + len(counted)]
    result = {
        "status": "ok",
        **_summary(counted, times, window),
        "realtime_fps": realtime_fps if mode in ("realtime", *CAMERA_MODES) else None,
        "exit_code": code,
    }
    if mode in CAMERA_MODES:  # seqs are per camera: skipped frames are counted per camera
        result.update(per_camera(counted, times, camera_ids(settings.cameras)))
        result["skipped_frames"] = sum(c["skipped_frames"] or 0
                                       for c in result["cameras"].values())  # fmt: skip
    result.update(sampler.in_window(times[0], times[-1]))
    per_frame = result["window_s"] * 1000 / max(1, len(counted) - 1) / 100
    result["cpu_ms_per_frame_by_process"] = {
        k: round(v * per_frame, 2) for k, v in result.get("cpu_percent_by_process", {}).items()
    }
    return result


@dataclass
class Launched:
    """A daemon the benchmark started: its process, the subscriber on its detections, the
    PSS sampler of its tree; ``code`` is its exit code once the ``launched`` block is left."""

    proc: subprocess.Popen
    root: Any  # psutil.Process of the supervisor
    sub: Any  # zmq SUB socket on detections.*
    sampler: PssSampler
    log_path: Path
    code: int | None = None


@contextlib.contextmanager
def launched(
    config: dict[str, Any], workdir: Path, endpoint: str, settings: PipelineBenchSettings
) -> Iterator[Launched]:
    """``edged run`` with ``config``, subscribed to ``endpoint`` before it starts (it waits for
    one subscriber). On leaving: unsubscribe, let it drain (the caller sends SIGTERM when it has
    what it wants), kill its session if it does not exit within a minute."""
    import psutil
    import yaml

    config_path = workdir / "edged.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / "daemon.log"
    argv = [sys.executable, "-m", "edged.cli", "run", "--config", str(config_path)]
    sub = _subscriber(endpoint)
    daemon: Launched | None = None
    sampler: PssSampler | None = None
    try:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        # From here on the daemon (its own session) is ours to end, whatever raises next.
        try:
            sampler = PssSampler(proc.pid, settings.sample_interval_s).start()
            daemon = Launched(proc, psutil.Process(proc.pid), sub, sampler, log_path)
            yield daemon
        finally:
            sub.close(0)
            if daemon is None:  # failed before the caller had it: nothing to drain
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            code = _wait_or_kill(proc)
            if daemon is not None:
                daemon.code = code
            if sampler is not None:
                sampler.stop()
    finally:
        sub.close(0)  # idempotent; here for a Popen that raised


def _subscriber(endpoint: str) -> Any:
    """A SUB socket on the daemon's detections that never drops a message (no HWM)."""
    import zmq

    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"detections.")
    sub.connect(endpoint)
    return sub


def _collect(
    sub: Any,
    proc: subprocess.Popen,
    root: Any,
    window: CpuWindow,
    settings: PipelineBenchSettings,
    wanted: int | None,
) -> tuple[list[dict[str, Any]], list[float], str | None]:
    """Read messages (and their arrival times) until ``wanted`` of them, the daemon's exit or
    the timeout; the CPU window spans the messages after the warm-up. Returns the failure."""
    warmup = settings.warmup
    arrivals: list[float] = []
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + settings.timeout_s
    stopped = False
    while True:
        if time.monotonic() > deadline:
            return messages, arrivals, f"timed out after {settings.timeout_s:.0f}s"
        if not sub.poll(200):
            if proc.poll() is not None:
                return messages, arrivals, None  # exited (end of the video, or a failure)
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


def _wait_or_kill(proc: subprocess.Popen) -> int | None:
    """The daemon's exit code: a minute to drain, then its whole session is killed."""
    try:
        return proc.wait(60.0)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def _summary(
    counted: list[dict[str, Any]], times: list[float], window: CpuWindow
) -> dict[str, Any]:
    """Rate, latencies by stage, skipped frames and the CPU window of the counted messages."""
    latency = [m["latency_ms"] for m in counted]
    e2e = [x["end_to_end"] for x in latency]
    infer = [x["infer"] for x in latency]
    seqs = [m["seq"] for m in counted]
    w = window.result()
    w["window_start"], w["window_end"] = times[0], times[-1]
    stages = sorted({k for x in latency for k in x if k != "end_to_end"})
    return {
        **w,
        "frames": len(counted),
        "fps": round((len(counted) - 1) / max(times[-1] - times[0], 1e-9), 2),
        "e2e_ms": percentile_summary(e2e),
        "infer_ms": percentile_summary(infer),
        "added_ms": percentile_summary([a - b for a, b in zip(e2e, infer, strict=True)]),
        "stage_ms": {s: percentile_summary([x.get(s, 0.0) for x in latency]) for s in stages},
        "hand_off_ms": percentile_summary(
            [
                x["end_to_end"] - sum(v for k, v in x.items() if k not in ("end_to_end", "capture"))
                for x in latency
            ]
        ),
        "skipped_frames": (seqs[-1] - seqs[0] + 1) - len(seqs),
        "precision": counted[-1]["model"]["precision"],
    }


def _renice_all_but_infer(root: Any, increment: int) -> None:
    import psutil

    for p in process_tree(root):
        if process_label(p) in ("infer", "resource_tracker"):
            continue
        with contextlib.suppress(psutil.Error):
            for thread in p.threads():  # niceness is per thread on Linux
                os.setpriority(os.PRIO_PROCESS, thread.id, p.nice() + increment)
