"""``edged bench-shadow``: what the live shadow monitor costs the live path, in one run.

The daemon plays the same video in realtime (paced at the file's rate, as a camera delivers)
with the monitor off and on, alternating (off, on, on, off, ...) so that a machine whose load
drifts weighs on both alike. Printed per setting: the live path's end-to-end latency (frame
read → publish, from every published message) and inference time, and with the monitor the
helper's CPU time as a share of the live inference time (its budget, max_cost_percent) and of
the inference process's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edged.tools.argtypes import add_number, ranged


def _setting(runs: list[dict[str, Any]], monitor: bool) -> dict[str, Any]:
    """The runs of one setting, pooled: latency figures averaged over runs, CPU summed."""
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return {"monitor": monitor, "status": "failed", "reason": runs[0].get("reason")}

    def mean(path: tuple[str, str]) -> float:
        return round(sum(r[path[0]][path[1]] for r in ok) / len(ok), 2)

    frames = sum(r["frames"] for r in ok)
    infer_s = sum(r["infer_ms"]["mean"] * r["frames"] / 1000 for r in ok)

    def cpu_s(role: str) -> float:
        return sum(r.get("cpu_percent_by_process", {}).get(role, 0.0) * r["window_s"] / 100
                   for r in ok)  # fmt: skip

    helper = cpu_s("shadow")
    return {
        "monitor": monitor,
        "status": "ok",
        "runs": len(ok),
        "frames": frames,
        "fps": round(sum(r["fps"] for r in ok) / len(ok), 2),
        "e2e_ms": {q: mean(("e2e_ms", q)) for q in ("p50", "p90", "p99", "mean")},
        "infer_ms": {q: mean(("infer_ms", q)) for q in ("p50", "mean")},
        "live_inference_s": round(infer_s, 2),
        "helper_cpu_s": round(helper, 2),
        "helper_share_of_inference_time": round(helper / infer_s, 4) if infer_s else None,
        "helper_share_of_infer_cpu": round(helper / cpu_s("infer"), 4) if cpu_s("infer") else None,
        "load_before": [r["load_before"][0] for r in ok],
    }


def run_shadow_bench(args: argparse.Namespace) -> dict[str, Any]:
    from edged.tools.pipeline_bench.daemon import run_edged
    from edged.tools.pipeline_bench.settings import PipelineBenchSettings

    settings = PipelineBenchSettings(models=(), source=args.source, threads=args.threads,
                                     frames=args.frames, warmup=args.warmup)  # fmt: skip
    model = {"manifest": args.manifest, "variant": args.variant, "models_dir": args.models_dir}
    shadow = {"enabled": True, "every_s": args.every_s, "variant": args.reference,
              "max_cost_percent": args.max_cost_percent, "priority": args.priority}  # fmt: skip
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="edged-bench-shadow-") as work:
        for i in range(args.rounds):
            for monitor in (False, True) if i % 2 == 0 else (True, False):
                extra = {"monitor": {"shadow": shadow}} if monitor else None
                workdir = Path(work) / f"{i}-{'on' if monitor else 'off'}"
                result = run_edged(settings, model, "realtime", workdir, args.frames, None, extra)
                runs[monitor].append(result)
                print(f"round {i + 1}/{args.rounds}, monitor {'on' if monitor else 'off'}: "
                      f"{result['status']}", flush=True)  # fmt: skip
    return {
        "variant": args.variant,
        "reference": args.reference,
        "monitor": shadow,
        "settings": [_setting(runs[False], False), _setting(runs[True], True)],
        "uptime_load": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\nlive {result['variant']}, reference {result['reference']}, monitor "
          f"{json.dumps(result['monitor'])}")  # fmt: skip
    print(
        f"{'monitor':8} {'frames':>6} {'fps':>6} {'e2e p50':>8} {'p90':>7} {'p99':>7} "
        f"{'infer p50':>9} {'helper CPU s':>12} {'÷ inference':>11} {'÷ infer CPU':>11}"
    )
    for s in result["settings"]:
        name = "on" if s["monitor"] else "off"
        if s["status"] != "ok":
            print(f"{name:8} failed: {s.get('reason')}")
            continue
        e2e, share = s["e2e_ms"], s["helper_share_of_inference_time"]
        cpu = s["helper_share_of_infer_cpu"]
        print(f"{name:8} {s['frames']:>6} {s['fps']:>6} {e2e['p50']:>8} {e2e['p90']:>7} "
              f"{e2e['p99']:>7} {s['infer_ms']['p50']:>9} {s['helper_cpu_s']:>12} "
              f"{'-' if not s['monitor'] else f'{100 * (share or 0):.1f} %':>11} "
              f"{'-' if not s['monitor'] else f'{100 * (cpu or 0):.1f} %':>11}")  # fmt: skip
    print(
        f"load average {result['uptime_load']} on {result['cpus']} CPUs (ms; e2e: frame read "
        "→ publish)"
    )


def run_command(args: argparse.Namespace) -> int:
    """The live path's latency with the shadow monitor off and on (same run, alternating), and
    the monitor's CPU cost."""
    if not Path(args.source).is_file():
        print(f"--source {args.source}: no such file", flush=True)
        return 2
    result = run_shadow_bench(args)
    print_table(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0 if all(s["status"] == "ok" for s in result["settings"]) else 1


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench-shadow", help="what the shadow monitor costs the live path",
                              description=run_command.__doc__)  # fmt: skip
    p.add_argument("--manifest", default="yolov5n", help="model manifest (path or name)")
    p.add_argument("--models-dir", default="models", help="where the manifest's files are")
    p.add_argument("--variant", default="static", help="the live variant")
    p.add_argument("--reference", default="fp32", help="the monitor's reference variant")
    p.add_argument("--source", "-s", required=True, help="video file, played in realtime")
    p.add_argument("--threads", type=ranged(int, 1), default=None,
                   help="the live runtime's threads (default: the daemon's)")  # fmt: skip
    add_number(p, "--frames", int, 240, "timed frames per run", low=1)
    # 5 s at 12 fps: the helper has loaded its model before the window (its load is not a
    # check's cost: the daemon's edged_shadow_cost_ratio leaves it out too).
    add_number(p, "--warmup", int, 60, "untimed frames first, per run", low=0)
    add_number(p, "--rounds", int, 2, "runs of each setting, alternating", low=1)
    add_number(p, "--every-s", float, 1.0, "monitor.shadow.every_s", low=0.01)
    add_number(p, "--max-cost-percent", float, 5.0, "monitor.shadow.max_cost_percent", low=0.1)
    p.add_argument("--priority", default="idle", choices=("idle", "nice", "normal"),
                   help="monitor.shadow.priority")  # fmt: skip
    p.add_argument("--out", "-o", help="write the JSON result here")
    p.set_defaults(func=run_command)
