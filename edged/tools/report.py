"""``edged report``: eval + bench results → a Markdown report with PNG plots.

Variants are paired with their FP32 source through ``source_sha256`` (written into every model
``edged quantize`` makes), so deltas and speed-ups are always against the right baseline even
when several model families are in one report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
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


def _backend(identity: dict[str, str]) -> str:
    return identity.get("backend", "onnxruntime")  # records from before the backend plugins


def _sort_key(identity: dict[str, str]) -> tuple[str, int, str, str]:
    return (identity["source_sha256"], _ORDER.get(identity["precision"], 9), identity["name"],
            _backend(identity))  # fmt: skip


def _threads(result: EvalResult | BenchResult) -> int | None:
    return result.settings.intra_op_threads


def _baselines(results: Sequence[EvalResult | BenchResult]) -> dict[tuple, Any]:
    """FP32 result per (model hash, thread count): speed-ups compare equal thread counts. The
    same FP32 file may have run on several backends: ONNX Runtime's run is the baseline."""
    fp32 = [r for r in results if r.identity["precision"] == "fp32"]
    fp32.sort(key=lambda r: _backend(r.identity) == "onnxruntime")  # ORT last: it wins
    return {(r.identity["sha256"], _threads(r)): r for r in fp32}


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


# A table column: its header and how to get its cell from one result. Declaring the two
# together keeps headers and values aligned when a column is added or moved.
_Column = tuple[str, Callable[[Any], Any]]
_IDENTITY_COLUMNS: tuple[_Column, ...] = (
    ("model", lambda r: r.identity["name"]),
    ("backend", lambda r: _backend(r.identity)),
    ("precision", lambda r: r.identity["precision"]),
)


def _fixed(digits: int, attribute: str) -> Callable[[Any], str]:
    """A cell: the (dotted) ``attribute`` of a result with ``digits`` decimals."""
    get = attrgetter(attribute)
    return lambda r: f"{get(r):.{digits}f}"


def _column_table(columns: Sequence[_Column], results: Sequence[Any]) -> list[str]:
    return _table([h for h, _ in columns], [[cell(r) for _, cell in columns] for r in results])


def _protocol(e: EvalResult) -> tuple:
    """What makes two evaluations comparable: the same images, scored the same way."""
    s = e.settings
    return (e.dataset["root"], e.dataset.get("split"), e.metrics.num_images,
            s.conf_threshold, s.iou_threshold, s.max_detections, s.multi_label)  # fmt: skip


def comparable_groups(evals: Sequence[EvalResult]) -> list[list[EvalResult]]:
    """Evaluations split by protocol (dataset, image count, thresholds), largest set first:
    a delta across protocols (10 images at conf 0.25 against 100 at 0.001) means nothing."""
    groups: dict[tuple, list[EvalResult]] = {}
    for e in evals:
        groups.setdefault(_protocol(e), []).append(e)
    return sorted(groups.values(), key=lambda g: -g[0].metrics.num_images)


def _protocol_line(e: EvalResult) -> str:
    s = e.settings
    images = e.metrics.num_images
    return (
        f"{images} image{'s' if images != 1 else ''}, {e.metrics.num_labels} labels from "
        f"`{e.dataset['root']}`; conf {s.conf_threshold}, NMS IoU {s.iou_threshold}, "
        f"max {s.max_detections} detections, multi-label {s.multi_label}; mAP by pycocotools."
    )


def accuracy_table(evals: Sequence[EvalResult]) -> list[str]:
    """Rows of one comparable group (see :func:`comparable_groups`). Accuracy does not depend
    on threads: any FP32 evaluation of the source will do as the baseline."""
    base = {k[0]: v for k, v in _baselines(evals).items()}

    def delta(e: EvalResult) -> str:
        ref = base.get(e.identity["source_sha256"])
        return _signed(None if ref is None else e.metrics.map50_95 - ref.metrics.map50_95, 100)

    columns = [
        *_IDENTITY_COLUMNS,
        ("P", _fixed(3, "metrics.precision")),
        ("R", _fixed(3, "metrics.recall")),
        ("mAP50", _fixed(3, "metrics.map50")),
        ("mAP50-95", _fixed(3, "metrics.map50_95")),
        ("Δ mAP50-95 (pts)", delta),
        ("dets/img ≥0.25", lambda e: e.confidence.per_image_at_least.get("0.25", "—")),
    ]
    return _column_table(columns, sorted(evals, key=lambda r: _sort_key(r.identity)))


def speed_table(benches: Sequence[BenchResult]) -> list[str]:
    base = _baselines(benches)

    def speedup(b: BenchResult) -> str:
        ref = _baseline_of(base, b)
        return "—" if ref is None else f"{ref.infer.p50 / b.infer.p50:.2f}×"

    columns = [
        *_IDENTITY_COLUMNS,
        ("threads", _threads),
        ("mean ms", _fixed(1, "infer.mean")),
        ("p50 ms", _fixed(1, "infer.p50")),
        ("p90 ms", _fixed(1, "infer.p90")),
        ("p95 ms", _fixed(1, "infer.p95")),
        ("p99 ms", _fixed(1, "infer.p99")),
        ("FPS", _fixed(1, "infer.fps")),
        ("speed-up (p50)", speedup),
        ("frame p50 ms", _fixed(1, "end_to_end.p50")),
        ("peak RSS MiB", lambda b: f"{b.peak_rss_bytes / 2**20:.0f}"),
        ("CPU %", _fixed(0, "cpu_percent")),
    ]
    order = sorted(benches, key=lambda r: (_threads(r) or 0, *_sort_key(r.identity)))
    return _column_table(columns, order)


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
    colors = plots.palette(plots.label(r.identity) for r in [*evals, *benches])

    def figure(alt: str, draw: Callable[..., Path], data: Any, name: str) -> list[str]:
        """Draw a plot into ``out`` (one colour per model in all of them); its Markdown lines."""
        made.append(draw(data, out / name, colors))
        return [f"![{alt}]({name})", ""]

    groups = comparable_groups(evals)
    if groups:
        lines += ["", "## Accuracy", ""]
        if len(groups) > 1:
            lines += [f"The evaluations used {len(groups)} different image sets or settings: "
                      "each has its own table, deltas compare within one table only, and the "
                      "plots show the first.", ""]  # fmt: skip
        for group in groups:
            lines += [_protocol_line(group[0]), "", *accuracy_table(group), ""]
        lines += figure("confidence CDF", plots.confidence_cdf, groups[0], "confidence_cdf.png")
    if benches:
        lines += ["## Speed", "", *_policy(benches), "", *speed_table(benches), ""]
        lines += figure(
            "latency per inference",
            plots.latency_per_inference,
            benches,
            "latency_per_inference.png",
        )
        lines += figure("memory", plots.memory, benches, "memory.png")
        warnings = sorted({w for b in benches for w in b.warnings})
        if warnings:
            lines += ["**Warnings**", "", *(f"- {w}" for w in warnings), ""]
    points = [
        (plots.label(e.identity), b.settings.intra_op_threads, b.infer.p50, e.metrics.map50_95)
        for e in (groups[0] if groups else ())
        for b in benches
        if b.identity["sha256"] == e.identity["sha256"]
    ]
    if points:
        lines += ["## Accuracy vs latency", ""]
        lines += figure(
            "accuracy vs latency", plots.accuracy_vs_latency, points, "accuracy_vs_latency.png"
        )
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return Report(path, tuple(made))
