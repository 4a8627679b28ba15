"""``edged tracking bench | mot | count``: the tracker's cost and quality, measured.

bench: tracker time per frame at N detections (in-process, synthetic boxes).
mot:   MOTA / IDF1 / ID switches and line crossings vs ground truth, on a constructed sequence
       of COCO crops run through the real daemon (needs the ``mot`` extra: motmetrics).
count: line crossings the daemon counts on a video, per line and direction.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFAULT_COCO = Path("../shared/data/coco128")


def _model_args(args: argparse.Namespace) -> list[str]:
    out = []
    for flag in ("model", "manifest", "variant", "models_dir"):
        value = getattr(args, flag)
        if value:
            out += [f"--{flag.replace('_', '-')}", str(value)]
    return out


def cmd_bench(args: argparse.Namespace) -> int:
    from edged.tracking.bench import bench

    result = bench(args.detections, args.frames)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"tracker, {result['detections']} detections, {result['frames']} frames "
              f"({result['tracks_alive']} tracks alive at the end)")  # fmt: skip
        for clock in ("wall", "cpu"):
            p50, p99, top = (result[f"{clock}_{k}_ms"] for k in ("p50", "p99", "max"))
            print(f"  {clock:4s}  p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {top:.3f} ms")
    return 0


def cmd_mot(args: argparse.Namespace) -> int:
    try:
        import motmetrics  # noqa: F401
    except ImportError:
        print("edged tracking mot needs motmetrics: pip install 'edged[mot]'")
        return 2
    from edged.tracking.measure import mot

    result = mot(Path(args.coco), _model_args(args), args.frames, args.keep)
    print(json.dumps(result, indent=2))
    return 0


def cmd_count(args: argparse.Namespace) -> int:
    import tempfile

    from edged.tracking.measure import crossings, named, run_daemon

    line: dict[str, Any] = {"name": args.line_name, "points": [args.a, args.b]}
    with tempfile.TemporaryDirectory(prefix="edged-count-") as tmp:
        got = run_daemon(Path(args.video), {"enabled": True, "lines": [line]}, _model_args(args),
                         Path(tmp))  # fmt: skip
    counts = crossings(got)
    frames = sum(1 for topic, _ in got if topic.startswith("detections."))
    print(json.dumps({"frames": frames, "line": line, "crossings": named(counts),
                      "total": sum(counts.values())}))  # fmt: skip
    return 0


def _point(text: str) -> list[float]:
    x, _, y = text.partition(",")
    return [float(x), float(y)]


def register_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser("tracking", help="measure the tracker (bench, mot, count)")
    sub = parser.add_subparsers(dest="tracking_cmd", required=True)
    bench = sub.add_parser("bench", help="tracker time per frame (p50/p99)")
    bench.add_argument("--detections", type=int, default=50)
    bench.add_argument("--frames", type=int, default=2000)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)
    for name, text in (("mot", "MOTA/IDF1 on a constructed COCO sequence, through the daemon"),
                       ("count", "line crossings on a video, through the daemon")):  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("--model", "-m", help="a single model file")
        p.add_argument("--manifest")
        p.add_argument("--variant")
        p.add_argument("--models-dir")
        if name == "mot":
            p.add_argument("--coco", default=str(DEFAULT_COCO), help="coco128 (images + labels)")
            p.add_argument("--frames", type=int, default=240)
            p.add_argument("--keep", type=Path, help="keep the video and daemon log here")
            p.set_defaults(func=cmd_mot)
        else:
            p.add_argument("video")
            p.add_argument("--line-name", default="line")
            p.add_argument("--a", type=_point, required=True, help="x,y (normalised 0-1)")
            p.add_argument("--b", type=_point, required=True, help="x,y (normalised 0-1)")
            p.set_defaults(func=cmd_count)
