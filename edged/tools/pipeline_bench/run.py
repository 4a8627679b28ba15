"""One pipeline benchmark: every contender for every model, back to back, into one record."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from itertools import product
from pathlib import Path
from typing import Any

from edged.tools.pipeline_bench.cameras import CAMERA_MODES, CAMERAS_PACED_MODE
from edged.tools.pipeline_bench.checks import compute_checks
from edged.tools.pipeline_bench.daemon import run_edged
from edged.tools.pipeline_bench.decode import decode_nms_microbench
from edged.tools.pipeline_bench.kill import CAMERAS_KILL_MODE, kill_fps_limit, run_camera_kill
from edged.tools.pipeline_bench.settings import (
    CONTENDERS,
    RESULT_KIND,
    RESULT_VERSION,
    PipelineBenchSettings,
)
from edged.tools.pipeline_bench.streams import ffmpeg_path
from edged.tools.pipeline_bench.workers import run_worker, video_info
from edged.tools.system import NOISY_OTHER_CPU_PERCENT, busy_seconds


def model_info(model: str) -> dict[str, Any]:
    """Backend, precision, output shape and whether Ultralytics can run it. ``model`` is a
    file (its suffix picks the backend) or ``BACKEND:FILE``."""
    from edged.backends.onnxruntime import precision_of
    from edged.tools.backend_choice import backend_name, split_backend
    from edged.tools.provenance import read_metadata

    _, path = split_backend(model)
    backend = backend_name(model)
    metadata = read_metadata(path)
    shapes: list[list[int]] = []
    imgsz = 640
    if path.suffix.lower() == ".onnx":
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        shapes = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output]
        inputs = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
        imgsz = inputs[0][2] if inputs and len(inputs[0]) == 4 else 640
        yolov8_like = bool(shapes) and len(shapes[0]) == 3 and 0 < shapes[0][1] < shapes[0][2]
        ultralytics = yolov8_like and {"names", "stride", "task"} <= set(metadata)
    else:  # an Ultralytics export folder (e.g. yolov8n_int8_openvino_model/) has metadata.yaml
        ultralytics = (path.parent / "metadata.yaml").is_file()
    return {
        "path": str(path),
        "backend": backend,
        "name": path.stem if backend == "onnxruntime" or path.suffix != ".onnx"
        else f"{path.stem}@{backend}",
        "precision": precision_of(metadata) if "edged_precision" in metadata or not
        ultralytics else ("int8" if "int8" in str(path) else "fp32"),
        "output_shapes": shapes,
        "imgsz": imgsz,
        "ultralytics_layout": ultralytics,
        "ultralytics_model": str(path.parent if path.suffix != ".onnx" else path),
        "size_bytes": path.stat().st_size,
    }  # fmt: skip


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
                runs: list[tuple[str, str | None]] = [("", None)]
                if contender == "edged":  # each mode with each --edged-options set
                    runs = list(product(edged_modes(settings), settings.edged_options or [None]))
                for mode, options in runs:
                    entry = {
                        "model": info["name"],
                        "backend": info["backend"],
                        "precision": info["precision"],
                        "contender": contender,
                        "mode": mode or None,
                        **({"options": options} if options else {}),
                    }
                    skip = _skip_reason(contender, info, settings, mode)
                    if skip:
                        record["results"].append({**entry, "status": "skipped", "reason": skip})
                        continue
                    say(f"{info['name']} ({info['precision']}): {contender} {mode} "
                        f"{options or ''}".rstrip())  # fmt: skip
                    waited = wait_for_quiet(settings.quiet_wait_s, settings.quiet_percent)
                    outcome = _run_one(
                        contender, mode, info, settings, threads, video, record, workdir, options
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


def _skip_reason(contender: str, info: dict[str, Any], s: PipelineBenchSettings,
                 mode: str = "") -> str | None:  # fmt: skip
    if mode == CAMERAS_KILL_MODE and ffmpeg_path() is None:
        return "ffmpeg is not installed (it serves the cameras' streams)"
    if contender != "ultralytics":
        return None
    if s.ultralytics == "none":
        return "disabled (--ultralytics none)"
    export_folder = not info["path"].endswith(".onnx")  # Ultralytics' own export: always its own
    if s.ultralytics == "fp32" and info["precision"] != "fp32" and not export_folder:
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
    options: str | None = None,
) -> dict[str, Any]:
    frames = s.frames
    if contender == "edged":
        workdir = workdir / f"run-{len(record['results'])}"  # one per run: nothing carried over
        if mode == CAMERAS_KILL_MODE:
            inference_fps = _inference_fps(record, info["name"])
            limit, paced = kill_fps_limit(s.realtime_fps, video["fps"] or 10.0, inference_fps,
                                          s.cameras)  # fmt: skip
            n = s.realtime_frames if frames is None else min(frames, s.realtime_frames)
            return run_camera_kill(s, info, workdir / "edged-cameras-kill", n, limit, options,
                                   paced=paced)  # fmt: skip
        if mode in CAMERA_MODES:
            fps = s.realtime_fps or video["fps"] or 10.0  # each: together more than inference
            limit = _inference_fps(record, info["name"])
            if mode == CAMERAS_PACED_MODE and limit:
                # Together a third of what inference gives: a frame finds it busy with another
                # camera's about a third of the time, so the median frame shows edged's own cost.
                fps = round(limit / 3 / s.cameras, 2)
            n = s.cameras * (
                s.realtime_frames if frames is None else min(frames, s.realtime_frames)
            )
            return run_edged(replace(s, warmup=s.warmup * s.cameras), info, mode,
                             workdir / "edged-cameras", n, fps, options=options)  # fmt: skip
        if mode == "realtime":
            fps = s.realtime_fps or video["fps"] or 10.0
            limit = _inference_fps(record, info["name"])
            if s.realtime_fps is None and limit and fps >= 0.8 * limit:
                fps = round(0.5 * limit, 1)  # pace well below the inference limit
            n = s.realtime_frames if frames is None else min(frames, s.realtime_frames)
            return run_edged(s, info, mode, workdir / f"edged-{mode}", n, fps, options=options)
        return run_edged(s, info, mode, workdir / f"edged-{mode}", frames, None,
                         options=options)  # fmt: skip
    if frames is None and contender == "inference":
        frames = max(1, video["frame_count"] - s.warmup) if video["frame_count"] > 0 else 200
    spec = {
        "model": info["path"],
        "backend": info["backend"],
        "ultralytics_model": info["ultralytics_model"],
        "precision": info["precision"],
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


def edged_modes(settings: PipelineBenchSettings) -> tuple[str, ...]:
    """The daemon's runs: the chosen modes, and with ``--cameras N > 1`` the N-camera runs
    (both, unless some N-camera mode was chosen by name)."""
    named = any(m in (*CAMERA_MODES, CAMERAS_KILL_MODE) for m in settings.edged_modes)
    return settings.edged_modes + (CAMERA_MODES if settings.cameras > 1 and not named else ())


def _inference_fps(record: dict[str, Any], model: str) -> float | None:
    for r in record["results"]:
        if r["model"] == model and r["contender"] == "inference" and r.get("status") == "ok":
            return r["fps"]
    return None
