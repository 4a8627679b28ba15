"""``edged bench pipeline`` and ``python -m edged.tools.pipeline_bench``: arguments, entry
point."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from edged.config import PipelineLayout
from edged.tools.argtypes import add_number, ranged
from edged.tools.pipeline_bench.cameras import CAMERA_MODES
from edged.tools.pipeline_bench.daemon import option_set
from edged.tools.pipeline_bench.decode import decode_nms_microbench
from edged.tools.pipeline_bench.kill import CAMERAS_KILL_MODE, UNPACED
from edged.tools.pipeline_bench.report import print_report
from edged.tools.pipeline_bench.run import run_pipeline_bench
from edged.tools.pipeline_bench.settings import CONTENDERS, EDGED_MODES, PipelineBenchSettings
from edged.tools.pipeline_bench.workers import WORKERS, _worker_main


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
        type=ranged(int, 1),
        default=None,
        help="ONNX Runtime intra-op threads (default: the daemon's default)",
    )
    p.add_argument(
        "--frames",
        type=ranged(int, 1),
        default=None,
        help="timed frames per contender (default: the whole video)",
    )
    add_number(p, "--warmup", int, 10, "untimed frames first", low=0)
    p.add_argument("--out", "-o", help="write the JSON result here")
    p.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated subset of {','.join(CONTENDERS)}",
    )
    p.add_argument(
        "--edged-modes",
        default=",".join(EDGED_MODES),
        help="edged runs: lossless (throughput), realtime (added latency); with --cameras N: "
        "cameras (saturated) and cameras-paced (the default N-camera runs), cameras-kill "
        "(each camera from its own FFmpeg server; camera 0's is killed and restarted)",
    )
    p.add_argument(
        "--edged-options",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="options of the model's backend for the edged runs (e.g. requests=2 for "
        "OpenVINO); repeat to compare sets in one run (default: the daemon's)",
    )
    p.add_argument(
        "--realtime-fps",
        type=ranged(float, 0.1),
        default=None,
        help="pacing of the realtime run (default: the file's rate, kept below the "
        "inference limit)",
    )
    add_number(p, "--realtime-frames", int, 240, "timed frames of the realtime run", low=1)
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
    add_number(p, "--decode-threads", int, 1,
               "the daemon's source.decode_threads; 0: FFmpeg's choice", low=0)  # fmt: skip
    p.add_argument(
        "--renice-others",
        type=int,
        default=0,
        metavar="N",
        help="experiment: add N to the niceness of the daemon's processes other than the "
        "inference stage once frames flow",
    )
    add_number(p, "--micro-runs", int, 1000, "decode + NMS micro-benchmark runs per scenario",
               low=1)  # fmt: skip
    p.add_argument(
        "--micro-only",
        action="store_true",
        help="only the decode + NMS micro-benchmark (no model or video needed)",
    )
    add_number(
        p,
        "--cameras",
        int,
        1,
        "with N > 1, also run the daemon with N file cameras "
        "(the same video, looped, each paced at its rate) on one inference stage; "
        "the N-camera modes of --edged-modes use N too",
        low=1,
    )
    add_number(p, "--timeout", float, 900.0, "seconds per contender", low=1)
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
        edged_options=tuple(args.edged_options),
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
        cameras=args.cameras,
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
    modes = [m for m in args.edged_modes.split(",") if m]
    bad += [m for m in modes if m not in (*EDGED_MODES, *CAMERA_MODES, CAMERAS_KILL_MODE)]
    if bad:
        errors.append(f"unknown contender/mode: {', '.join(bad)}")
    several = [m for m in modes if m in (*CAMERA_MODES, CAMERAS_KILL_MODE)]
    if several and args.cameras < 2:
        errors.append(f"--edged-modes {','.join(several)} needs --cameras N with N >= 2")
    if CAMERAS_KILL_MODE in modes and "inference" not in args.contenders.split(",") and (
        not args.realtime_fps):  # fmt: skip
        errors.append(f"--edged-modes {UNPACED}")
    for text in args.edged_options:
        try:
            option_set(text)
        except ValueError as exc:
            errors.append(f"--edged-options {exc}")
    if errors:
        for e in errors:
            print(f"edged bench pipeline: {e}", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    record = run_pipeline_bench(settings, progress=lambda m: print(f"… {m}", file=sys.stderr))
    print_report(record)
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2))
        print(f"wrote {args.out}")
    return 0


def usage_description() -> str | None:
    """The package's docstring: what the benchmark runs and reports (its --help text)."""
    return sys.modules["edged.tools.pipeline_bench"].__doc__


def register_pipeline_bench(
    subparsers: argparse._SubParsersAction, name: str = "bench-pipeline"
) -> argparse.ArgumentParser:
    """Add ``edged bench-pipeline`` (or another ``name``) to ``edged``'s sub-commands."""
    p = subparsers.add_parser(
        name,
        help="the pipeline vs inference-only, a naive loop, Ultralytics (FPS, latency, CPU, PSS)",
        description=usage_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run_command)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edged bench pipeline",
        description=usage_description(),
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
