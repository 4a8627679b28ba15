"""What a pipeline benchmark runs with, and the targets its checks compare against."""

from __future__ import annotations

from dataclasses import dataclass

RESULT_KIND = "edged.bench.pipeline"
RESULT_VERSION = 1
CONTENDERS = ("inference", "naive", "ultralytics", "edged")
EDGED_MODES = ("lossless", "realtime")
MB = 1_000_000  # PSS is reported in MB (10^6 bytes), the unit of the 400 MB target

# Issue 9's targets (the thresholds the checks compare against).
TARGET_EDGED_VS_INFERENCE = 0.9
TARGET_STATIC_VS_ULTRALYTICS = 2.5
TARGET_FP32_VS_ULTRALYTICS = 1.15
# Issue 17: edged on a model against Ultralytics on the very same file (its OpenVINO INT8 export).
TARGET_SAME_MODEL_VS_ULTRALYTICS = 1.15
TARGET_ADDED_P50_MS = 3.0
TARGET_ADDED_P99_MS = 10.0
TARGET_DECODE_NMS_P99_MS = 1.0
TARGET_PSS_MB = 400.0
# Issue 18: N file cameras on one inference stage.
TARGET_CAMERAS_VS_INFERENCE = 0.9  # total published FPS against single-camera inference-only
TARGET_CAMERA_FPS_SPREAD = 0.15  # every camera's FPS within ±15 % of their mean
TARGET_PSS_PER_EXTRA_CAMERA_MB = 60.0  # the daemon's PSS growth per camera beyond the first
TARGET_KILL_OTHERS_FPS_CHANGE = 0.10  # one camera's stream killed: each other's FPS moves less


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
    # Sets of the model's backend options, one edged run each ("requests=1", "requests=2"):
    # empty, one run with the daemon's defaults.
    edged_options: tuple[str, ...] = ()
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
    cameras: int = 1  # > 1: edged runs with this many cameras (issue 18)
