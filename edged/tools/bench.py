"""``edged bench``: latency of models under a locked execution policy.

The policy is explicit and recorded: intra/inter-op thread counts, the CPUs the process (and so
ONNX Runtime's thread pool, created after pinning) may run on, graph optimisation, spin-wait
inside a run (ORT's default; ``--no-spin`` for sleeping workers), warm-up runs excluded from the
statistics, N timed runs.
Each model is measured in a fresh process by :func:`benchmark_isolated` so one model's memory
and allocator state cannot leak into the next one's numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edged.postprocess.decoders import DecodeParams
from edged.tools.backend_choice import backend_name, options_for, split_backend
from edged.tools.dataset import read_image
from edged.tools.errors import ToolError
from edged.tools.memory import PeakMemory
from edged.tools.provenance import environment, model_identity
from edged.tools.runner import ModelRunner
from edged.tools.system import TimedWindow, machine_report, pinned, system_state

RESULT_KIND = "edged.bench"
RESULT_VERSION = 1
PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class BenchSettings:
    """The execution policy. ``cpus=None``: every CPU this process may use."""

    intra_op_threads: int | None = None
    inter_op_threads: int = 1
    cpus: tuple[int, ...] | None = None
    warmup: int = 10
    runs: int = 100
    graph_optimization: str = "all"
    spin_wait: bool = True
    image: str | None = None
    backend: str | None = None  # default: by the model file's suffix
    backend_options: tuple[tuple[str, Any], ...] = ()

    @staticmethod
    def from_dict(d: dict[str, Any]) -> BenchSettings:
        cpus = d.get("cpus")
        options = tuple(tuple(pair) for pair in d.get("backend_options", ()))
        return BenchSettings(**{**d, "cpus": tuple(cpus) if cpus is not None else None,
                                "backend_options": options})  # fmt: skip

    def resolved(self) -> BenchSettings:
        """Fill in the defaults from the machine, so the record says what actually ran."""
        allowed = _allowed_cpus()
        cpus = self.cpus or tuple(sorted(allowed))
        if not set(cpus) <= allowed:
            raise ToolError(f"CPUs {sorted(set(cpus) - allowed)} are not available to this process")
        threads = self.intra_op_threads or len(cpus)
        return replace(self, cpus=tuple(cpus), intra_op_threads=threads)


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds, over the timed runs only."""

    mean: float
    std: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float
    fps: float

    @staticmethod
    def of(latencies_ms: Sequence[float]) -> LatencyStats:
        a = np.asarray(latencies_ms, dtype=np.float64)
        p = np.percentile(a, PERCENTILES)
        return LatencyStats(
            *(round(float(x), 3) for x in (a.mean(), a.std(), a.min(), a.max(), *p)),
            fps=round(1000.0 / float(a.mean()), 2),
        )


@dataclass(frozen=True)
class BenchResult:
    identity: dict[str, str]
    settings: BenchSettings
    infer: LatencyStats
    # Whole frame on this CPU: letterbox + inference + decode/NMS, per run.
    end_to_end: LatencyStats
    preprocess_ms: float
    postprocess_ms: float
    latencies_ms: list[float]
    frame_latencies_ms: list[float]
    load_s: float
    peak_rss_bytes: int
    cpu_percent: float
    system_before: dict[str, Any]
    system_after: dict[str, Any]
    warnings: list[str]
    environment: dict[str, str] = field(default_factory=environment)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": RESULT_KIND, "version": RESULT_VERSION, **asdict(self)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> BenchResult:
        fields = {k: v for k, v in d.items() if k not in ("kind", "version")}
        fields.update(
            settings=BenchSettings.from_dict(d["settings"]),
            infer=LatencyStats(**d["infer"]),
            end_to_end=LatencyStats(**d["end_to_end"]),
        )
        return BenchResult(**fields)

    def summary_row(self) -> dict[str, Any]:
        i = self.infer
        return {
            "model": self.identity["name"],
            "precision_format": self.identity["precision"],
            "threads": self.settings.intra_op_threads,
            "cpus": " ".join(map(str, self.settings.cpus or ())),
            "runs": self.settings.runs,
            "mean_ms": i.mean,
            "p50_ms": i.p50,
            "p90_ms": i.p90,
            "p95_ms": i.p95,
            "p99_ms": i.p99,
            "fps": i.fps,
            "e2e_p50_ms": self.end_to_end.p50,
            "peak_rss_mib": round(self.peak_rss_bytes / 2**20, 1),
            "cpu_percent": self.cpu_percent,
            "sha256": self.identity["sha256"][:12],
        }


def _allowed_cpus() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))  # pragma: no cover - macOS/Windows


def _bench_image(settings: BenchSettings) -> np.ndarray:
    if settings.image:
        return read_image(Path(settings.image))
    # A fixed 1280×720 gradient: deterministic, and it exercises the letterbox resize.
    y, x = np.mgrid[0:720, 0:1280]
    return np.dstack([(x // 5) % 256, (y // 3) % 256, ((x + y) // 7) % 256]).astype(np.uint8)


def benchmark(model_path: str | Path, settings: BenchSettings | None = None) -> BenchResult:
    """Benchmark one model in this process (pins this thread's CPU affinity while running)."""
    s = (settings or BenchSettings()).resolved()
    if s.runs < 1 or s.warmup < 0:
        raise ValueError("need runs ≥ 1 and warmup ≥ 0")
    name = backend_name(model_path, s.backend)
    options = options_for(
        name,
        s.intra_op_threads,
        inter_op_threads=s.inter_op_threads,
        graph_optimization=s.graph_optimization,
        spin_wait=s.spin_wait,
        **dict(s.backend_options),
    )
    image = _bench_image(s)
    before = system_state()
    # Pinned before the session exists: ORT's worker threads inherit the mask when created.
    with pinned(s.cpus), PeakMemory() as memory:
        t0 = time.perf_counter()
        runner = ModelRunner(model_path, options, DecodeParams(), backend=name)
        ran = {"backend": name, "precision": runner.backend.precision}
        load_s = time.perf_counter() - t0
        try:
            for _ in range(s.warmup):
                runner.detect(image)
            with TimedWindow(s.cpus) as window:
                runs = [runner.timed_detect(image) for _ in range(s.runs)]
        finally:
            runner.close()
    # What else ran on the pinned CPUs meanwhile: the figures are only as clean as the machine.
    cpus_text = f"CPU{'s' if len(s.cpus) != 1 else ''} {','.join(map(str, s.cpus))}"
    after, warnings = machine_report(before, window, f"the pinned {cpus_text}")
    infer_ms = [round(1000 * r.infer, 4) for r in runs]
    e2e_ms = [round(1000 * r.total, 4) for r in runs]
    return BenchResult(
        identity=model_identity(split_backend(model_path)[1], **ran),
        settings=s,
        infer=LatencyStats.of(infer_ms),
        end_to_end=LatencyStats.of(e2e_ms),
        preprocess_ms=round(1000 * float(np.mean([r.preprocess for r in runs])), 3),
        postprocess_ms=round(1000 * float(np.mean([r.postprocess for r in runs])), 3),
        latencies_ms=infer_ms,
        frame_latencies_ms=e2e_ms,
        load_s=round(load_s, 3),
        peak_rss_bytes=memory.peak_rss_bytes,
        cpu_percent=window.cpu_percent,
        system_before=before,
        system_after=after,
        warnings=warnings,
    )


USER_ERROR = 2  # the worker's exit status for a ToolError (its message is the last stderr line)


def benchmark_isolated(
    model_path: str | Path, settings: BenchSettings | None = None
) -> BenchResult:
    """:func:`benchmark` in a fresh interpreter (clean memory, clean thread pools)."""
    request = {"model": str(model_path), "settings": asdict(settings or BenchSettings())}
    return BenchResult.from_dict(run_isolated("edged.tools.bench", request, model_path))


def run_isolated(module: str, request: dict[str, Any], model_path: str | Path) -> dict[str, Any]:
    """``python -m module`` with ``request`` as JSON on stdin → its JSON result (see
    :func:`serve_isolated`). A subprocess rather than ``multiprocessing``: works from any
    caller, including scripts without an ``if __name__ == "__main__"`` guard."""
    done = subprocess.run(
        [sys.executable, "-m", module],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
    )
    last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    if done.returncode == USER_ERROR:  # the worker's one-line account of a bad model or setting
        raise ToolError(last)
    if done.returncode != 0:
        raise ToolError(f"benchmark of {model_path} failed: {last}")
    return json.loads(done.stdout)


def serve_isolated(work: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The worker's side of :func:`run_isolated`: one request (JSON on stdin) → one result
    (stdout); a ToolError becomes its message on stderr and exit status USER_ERROR."""
    request = json.loads(sys.stdin.read())
    try:
        result = work(request)
    except ToolError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(USER_ERROR) from None
    sys.stdout.write(json.dumps(result))


def merge_rounds(rounds: Sequence[BenchResult]) -> BenchResult:
    """One result from several rounds of the same model: all timed runs pooled."""
    first, last = rounds[0], rounds[-1]
    latencies = [x for r in rounds for x in r.latencies_ms]
    frames = [x for r in rounds for x in r.frame_latencies_ms]
    return replace(
        first,
        settings=replace(first.settings, runs=len(latencies)),
        infer=LatencyStats.of(latencies),
        end_to_end=LatencyStats.of(frames),
        preprocess_ms=round(float(np.mean([r.preprocess_ms for r in rounds])), 3),
        postprocess_ms=round(float(np.mean([r.postprocess_ms for r in rounds])), 3),
        latencies_ms=latencies,
        frame_latencies_ms=frames,
        peak_rss_bytes=max(r.peak_rss_bytes for r in rounds),
        cpu_percent=round(float(np.mean([r.cpu_percent for r in rounds])), 1),
        system_after=last.system_after,
        warnings=sorted({w for r in rounds for w in r.warnings}),
    )


def benchmark_many(
    model_paths: Sequence[str | Path],
    settings: BenchSettings | None = None,
    isolate: bool = True,
    rounds: int = 1,
) -> list[BenchResult]:
    """Each model in turn; with ``rounds`` > 1 the list is repeated round-robin and each
    model's runs pooled, so a load change on a shared machine hits every model alike."""
    run = benchmark_isolated if isolate else benchmark
    per_model: list[list[BenchResult]] = [[] for _ in model_paths]
    for _ in range(max(1, rounds)):
        for results, path in zip(per_model, model_paths, strict=True):
            results.append(run(path, settings))
    return [merge_rounds(r) if len(r) > 1 else r[0] for r in per_model]


def _worker(request: dict[str, Any]) -> dict[str, Any]:
    """``python -m edged.tools.bench``: one model's :func:`benchmark`."""
    return benchmark(request["model"], BenchSettings.from_dict(request["settings"])).to_dict()


if __name__ == "__main__":
    serve_isolated(_worker)
