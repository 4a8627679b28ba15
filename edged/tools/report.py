"""``edged report``: eval + bench results → a Markdown report with PNG plots.

Variants are paired with their FP32 source through ``source_sha256`` (written into every model
``edged quantize`` makes), so deltas and speed-ups are always against the right baseline even
when several model families are in one report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.tools import plots
from edged.tools.bench import BenchResult
from edged.tools.errors import ToolError
from edged.tools.evaluate import EvalResult

_ORDER = {"fp32": 0, "int8-static": 1, "int8-dynamic": 2}


@dataclass(frozen=True)
class Report:
    markdown_path: Path
    plots: tuple[Path, ...]


def _sort_key(identity: dict[str, str]) -> tuple[str, int, str]:
    return (identity["source_sha256"], _ORDER.get(identity["precision"], 9), identity["name"])


def _threads(result: EvalResult | BenchResult) -> int | None:
    return result.settings.intra_op_threads


def _baselines(results: Sequence[EvalResult | BenchResult]) -> dict[tuple, Any]:
    """FP32 result per (model hash, thread count): speed-ups compare equal thread counts."""
    return {
        (r.identity["sha256"], _threads(r)): r for r in results if r.identity["precision"] == "fp32"
    }


def _baseline_of(base: dict[tuple, Any], r: EvalResult | BenchResult) -> Any:
    return base.get((r.identity["source_sha256"], _threads(r)))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _signed(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "—" if value is None else f"{value * scale:+.{digits}f}"


def accuracy_table(evals: Sequence[EvalResult]) -> list[str]:
    # Accuracy does not depend on threads: any FP32 evaluation of the source will do.
    base = {k[0]: v for k, v in _baselines(evals).items()}
    rows = []
    for e in sorted(evals, key=lambda r: _sort_key(r.identity)):
        m, ref = e.metrics, base.get(e.identity["source_sha256"])
        delta = None if ref is None else m.map50_95 - ref.metrics.map50_95
        rows.append(
            [
                e.identity["name"],
                e.identity["precision"],
                f"{m.precision:.3f}",
                f"{m.recall:.3f}",
                f"{m.map50:.3f}",
                f"{m.map50_95:.3f}",
                _signed(delta, 100),
                e.confidence.per_image_at_least.get("0.25", "—"),
            ]
        )
    header = [
        "model",
        "precision",
        "P",
        "R",
        "mAP50",
        "mAP50-95",
        "Δ mAP50-95 (pts)",
        "dets/img ≥0.25",
    ]
    return _table(header, rows)


def speed_table(benches: Sequence[BenchResult]) -> list[str]:
    base = _baselines(benches)
    rows = []
    for b in sorted(benches, key=lambda r: (_threads(r) or 0, *_sort_key(r.identity))):
        i, ref = b.infer, _baseline_of(base, b)
        speedup = "—" if ref is None else f"{ref.infer.p50 / i.p50:.2f}×"
        rows.append(
            [
                b.identity["name"],
                b.identity["precision"],
                b.settings.intra_op_threads,
                f"{i.mean:.1f}",
                f"{i.p50:.1f}",
                f"{i.p90:.1f}",
                f"{i.p95:.1f}",
                f"{i.p99:.1f}",
                f"{i.fps:.1f}",
                speedup,
                f"{b.end_to_end.p50:.1f}",
                f"{b.peak_rss_bytes / 2**20:.0f}",
                f"{b.cpu_percent:.0f}",
            ]
        )
    header = [
        "model",
        "precision",
        "threads",
        "mean ms",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "FPS",
        "speed-up (p50)",
        "frame p50 ms",
        "peak RSS MiB",
        "CPU %",
    ]
    return _table(header, rows)


def _policy(benches: Sequence[BenchResult]) -> list[str]:
    lines = []
    for key in sorted(
        {
            (
                b.settings.intra_op_threads,
                b.settings.inter_op_threads,
                b.settings.cpus,
                b.settings.warmup,
                b.settings.runs,
                b.settings.graph_optimization,
                b.settings.spin_wait,
            )
            for b in benches
        },
        key=str,
    ):
        intra, inter, cpus, warmup, runs, opt, spin = key
        lines.append(
            f"- intra-op threads {intra}, inter-op {inter}, pinned to CPUs "
            f"{','.join(map(str, cpus or ()))}, {warmup} warm-up + {runs} timed runs, "
            f"graph optimisation `{opt}`, spin-wait {'on' if spin else 'off'}"
        )
    loads = [
        b.system_before["load_average"][0] for b in benches if b.system_before.get("load_average")
    ]
    if loads:
        # A shared machine's other work inflates latencies; say how busy it was.
        lines.append(f"- 1-minute load average before the runs: {min(loads):.2f}–{max(loads):.2f}")
    first = benches[0].system_before
    machine = [
        f"- CPU: {first.get('cpu_model')}" + (f" ({first['board']})" if first.get("board") else "")
    ]
    governors = sorted(set(first.get("governors", {}).values()))
    if governors:
        machine.append(f"- governor: {', '.join(governors)}")
    temps = [t for b in benches for t in b.system_after.get("temperature_c", {}).values()]
    if temps:
        machine.append(f"- max temperature after a run: {max(temps):.1f} °C")
    return lines + machine


def generate_report(
    evals: Sequence[EvalResult],
    benches: Sequence[BenchResult],
    output_dir: str | Path,
    title: str = "edged model report",
) -> Report:
    """Write ``report.md`` and its plots into ``output_dir``."""
    if not evals and not benches:
        raise ToolError("nothing to report: give eval and/or bench result JSON files")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", f"Generated {dt.datetime.now().isoformat(timespec='seconds')}."]
    env = (evals or benches)[0].environment
    if env:
        lines.append(
            f"ONNX Runtime {env.get('onnxruntime')}, Python {env.get('python')}, "
            f"{env.get('platform')}."
        )
    made: list[Path] = []
    if evals:
        e0 = evals[0]
        s = e0.settings
        lines += [
            "",
            "## Accuracy",
            "",
            f"{e0.metrics.num_images} images, {e0.metrics.num_labels} labels from "
            f"`{e0.dataset['root']}`; conf {s.conf_threshold}, NMS IoU {s.iou_threshold}, "
            f"max {s.max_detections} detections, multi-label {s.multi_label}; mAP by pycocotools.",
            "",
            *accuracy_table(evals),
            "",
        ]
        made.append(plots.confidence_cdf(evals, out / "confidence_cdf.png"))
        lines += ["![confidence CDF](confidence_cdf.png)", ""]
    if benches:
        lines += ["## Speed", "", *_policy(benches), "", *speed_table(benches), ""]
        made.append(plots.latency_per_inference(benches, out / "latency_per_inference.png"))
        made.append(plots.memory(benches, out / "memory.png"))
        lines += [
            "![latency per inference](latency_per_inference.png)",
            "",
            "![memory](memory.png)",
            "",
        ]
        warnings = sorted({w for b in benches for w in b.warnings})
        if warnings:
            lines += ["**Warnings**", "", *(f"- {w}" for w in warnings), ""]
    points = [
        (plots.label(e.identity), b.settings.intra_op_threads, b.infer.p50, e.metrics.map50_95)
        for e in evals
        for b in benches
        if b.identity["sha256"] == e.identity["sha256"]
    ]
    if points:
        made.append(plots.accuracy_vs_latency(points, out / "accuracy_vs_latency.png"))
        lines += [
            "## Accuracy vs latency",
            "",
            "![accuracy vs latency](accuracy_vs_latency.png)",
            "",
        ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return Report(path, tuple(made))
