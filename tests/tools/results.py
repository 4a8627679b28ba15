"""Fixture eval/bench results for FP32 + static + dynamic variants of one source model."""

from __future__ import annotations

import numpy as np

from edged.tools.bench import BenchResult, BenchSettings, LatencyStats
from edged.tools.coco import DetectionMetrics
from edged.tools.evaluate import EvalResult, EvalSettings, summarize_confidence

SOURCE = "a" * 64
# precision → (sha, mAP50, mAP50-95, latency ms)
VARIANTS = {
    "fp32": (SOURCE, 0.525, 0.340, 40.0),
    "int8-static": ("b" * 64, 0.520, 0.334, 25.0),
    "int8-dynamic": ("c" * 64, 0.522, 0.338, 55.0),
}
ENV = {"onnxruntime": "1.x", "python": "3.11", "platform": "test"}


def identity(precision: str) -> dict[str, str]:
    sha = VARIANTS[precision][0]
    name = "yolov5n" if precision == "fp32" else f"yolov5n-{precision}"
    return {"model": f"models/{name}.onnx", "name": name, "sha256": sha,
            "precision": precision, "source_sha256": SOURCE}  # fmt: skip


def eval_result(precision: str) -> EvalResult:
    _, map50, map50_95, latency = VARIANTS[precision]
    rng = np.random.default_rng(len(precision))
    scores = rng.beta(0.5, 3.0, size=2000)
    return EvalResult(
        identity=identity(precision),
        dataset={"root": "/data/coco-val2017-100", "split": "val", "images": 101},
        settings=EvalSettings(),
        metrics=DetectionMetrics(map50, map50_95, 0.55, 0.50, 0.2, 101, 716, 2000, {0: 0.4}),
        confidence=summarize_confidence(scores, 101),
        mean_inference_ms=latency,
        duration_s=10.0,
        environment=ENV,
    )


def bench_result(precision: str, warnings: tuple[str, ...] = (), threads: int = 2) -> BenchResult:
    latency = VARIANTS[precision][3] * 2 / threads
    runs = list(latency + np.random.default_rng(1).normal(0, 1, 50))
    system = {"cpu_model": "Test CPU", "governors": {"cpu0": "performance"},
              "temperature_c": {"thermal_zone0:cpu": 55.0}}  # fmt: skip
    return BenchResult(
        identity=identity(precision),
        settings=BenchSettings(intra_op_threads=threads, cpus=(0, 1), warmup=10, runs=50),
        infer=LatencyStats.of(runs),
        end_to_end=LatencyStats.of([r + 5 for r in runs]),
        preprocess_ms=3.0,
        postprocess_ms=2.0,
        latencies_ms=runs,
        frame_latencies_ms=[r + 5 for r in runs],
        load_s=0.2,
        peak_rss_bytes=int((150 + latency) * 2**20),
        cpu_percent=190.0,
        system_before=system,
        system_after=system,
        warnings=list(warnings),
        environment=ENV,
    )
