"""The printed table of a pipeline benchmark record."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from edged.tools.system import NOISY_OTHER_CPU_PERCENT


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
        label += f" [{r['options']}]" if r.get("options") else ""
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
        title=f"edged bench pipeline — {Path(record['video']['path']).name} "
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
    for r in record["results"]:
        if r.get("status") == "ok" and r.get("cameras"):
            console.print(camera_table(r))
        if r.get("status") == "ok" and r.get("mode") == "cameras-kill":
            console.print(kill_table(r))
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
        reason = c["inputs"].get("reason") if c["passed"] is None else None
        result = verdict[c["passed"]] + (f": {escape(reason)}" if reason else "")
        checks.add_row(escape(c["name"]), c["target"], _fmt(c["value"]), result)
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


def camera_table(result: dict[str, Any]) -> Any:
    """One row per camera of an N-camera run, and the total."""
    from rich.table import Table

    table = Table(title=f"{result['model']}: {result['camera_count']} cameras, one inference "
                  f"stage (FPS spread {_fmt(100 * (result['fps_spread'] or 0))} %)")  # fmt: skip
    for c in ("camera", "frames", "FPS", "skipped", "e2e p50", "added p50", "added p99"):
        table.add_column(c, justify="left" if c == "camera" else "right")
    for camera_id, c in result["cameras"].items():
        e2e, added = c["e2e_ms"] or {}, c["added_ms"] or {}  # none for a starved camera
        table.add_row(camera_id, _fmt(c["frames"]), _fmt(c["fps"]), _fmt(c["skipped_frames"]),
                      _fmt(e2e.get("p50")), _fmt(added.get("p50")),
                      _fmt(added.get("p99")))  # fmt: skip
    table.add_row("all", _fmt(result["frames"]), _fmt(result["total_fps"]),
                  _fmt(result["skipped_frames"]), _fmt(result["e2e_ms"]["p50"]),
                  _fmt(result["added_ms"]["p50"]), _fmt(result["added_ms"]["p99"]))  # fmt: skip
    return table


def kill_table(result: dict[str, Any]) -> Any:
    """One row per camera of a cameras-kill run: FPS before, while camera 0's stream is down,
    after it is back, and the ratios; the reconnect in the caption."""
    from rich.table import Table

    killed, windows = result["killed"], result["windows"]
    limit = result["fps_limit"]
    table = Table(title=f"{result['model']}: {killed}'s stream killed, "
                  f"{result['cameras_config']} cameras "
                  f"(fps_limit {_fmt(limit) if limit else 'none: the stream rate'})")  # fmt: skip
    for c in ("camera", "FPS before", "FPS during", "FPS after", "during ÷ before",
              "after ÷ before"):  # fmt: skip
        table.add_column(c, justify="left" if c == "camera" else "right")
    for camera in windows["before"]["fps"]:
        fps = [_fmt(windows[w]["fps"][camera]) if w in windows else "–"
               for w in ("before", "during", "after")]  # fmt: skip
        ratios = [result[key].get(camera) for key in
                  ("others_during_vs_before", "others_after_vs_before")]  # fmt: skip
        table.add_row(camera + (" (killed)" if camera == killed else ""), *fps,
                      *(_fmt(r) for r in ratios))  # fmt: skip
    others = [_fmt(windows[w]["others_fps"]) if w in windows else "–"
              for w in ("before", "during", "after")]  # fmt: skip
    table.add_row("others", *others, _fmt(result["others_total_during_vs_before"]),
                  _fmt(result["others_total_after_vs_before"]))  # fmt: skip
    back = result["reconnect_s"]
    table.caption = (f"{killed} reconnected {_fmt(back)} s after its server listened again"
                     if result["reconnected"] else f"{killed} did not reconnect")  # fmt: skip
    return table
