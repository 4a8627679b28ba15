"""``edged bench pipeline``: the whole pipeline against the tools users reach for, in one run.

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
    With ``--cameras N``: N file cameras on one inference stage, saturated (``cameras``) and
    paced (``cameras-paced``); ``--edged-modes cameras-kill``: N cameras each served by its own
    FFmpeg on loopback, paced at half the inference limit together, camera 0's server killed
    and restarted: the others' FPS before, during and after, and camera 0's reconnect time.

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

# The package's modules, one role each: settings (what runs, and the targets), measure (CPU and
# PSS of process trees), workers (the contenders run in worker processes), daemon (edged itself
# as a contender), decode (the decode + NMS micro-benchmark), run (one whole benchmark), checks
# (the ratio checks), report (the printed table), cli, kill (the cameras-kill run) and
# streams (its FFmpeg servers). The docstring above is the --help text.

from edged.tools.pipeline_bench.checks import compute_checks
from edged.tools.pipeline_bench.cli import main, register_pipeline_bench, settings_from_args
from edged.tools.pipeline_bench.daemon import daemon_config
from edged.tools.pipeline_bench.decode import (
    decode_nms_microbench,
    synthetic_yolov8_output,
    yolov8_head_of,
)
from edged.tools.pipeline_bench.report import print_report
from edged.tools.pipeline_bench.run import effective_threads, run_pipeline_bench
from edged.tools.pipeline_bench.settings import CONTENDERS, PipelineBenchSettings

__all__ = [
    "CONTENDERS",
    "PipelineBenchSettings",
    "compute_checks",
    "daemon_config",
    "decode_nms_microbench",
    "effective_threads",
    "main",
    "print_report",
    "register_pipeline_bench",
    "run_pipeline_bench",
    "settings_from_args",
    "synthetic_yolov8_output",
    "yolov8_head_of",
]
