"""PNG plots for the report, drawn with matplotlib's object API (no pyplot, no global backend)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from edged.tools.bench import BenchResult
from edged.tools.evaluate import EvalResult

# The CDF is drawn over detections at or above this confidence: at the eval threshold (0.001)
# thousands of near-zero candidates per image would flatten every curve against the y-axis.
CDF_MIN_CONFIDENCE = 0.05


def _figure(width: float = 7.0, height: float = 4.0, columns: int = 1):
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - exercised only without the extra
        from edged.tools.errors import ToolError

        raise ToolError("edged report needs matplotlib: pip install 'edged[tools]'") from None
    fig = Figure(figsize=(width * columns**0.5, height), dpi=110, layout="constrained")
    axes = fig.subplots(1, columns, sharey=True, squeeze=False)[0]
    return fig, axes if columns > 1 else axes[0]


def label(identity: dict[str, str]) -> str:
    name, precision = identity["name"], identity["precision"]
    return name if precision in name else f"{name} ({precision})"


def bench_labels(benches: Sequence[BenchResult]) -> list[str]:
    """Model labels, with the thread count when the results mix thread counts."""
    mixed = len({b.settings.intra_op_threads for b in benches}) > 1
    return [
        label(b.identity) + (f" @{b.settings.intra_op_threads}t" if mixed else "") for b in benches
    ]


def palette(labels: Iterable[str]) -> dict[str, Any]:
    """One colour per model label; the report passes one palette to every plot, so a model
    has the same colour in all of them."""
    from matplotlib import colormaps

    names = sorted(set(labels))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def latency_per_inference(
    benches: Sequence[BenchResult], path: Path, colors: dict[str, Any] | None = None
) -> Path:
    """One panel per thread count; log scale when the models are an order of magnitude apart."""
    threads = sorted({b.settings.intra_op_threads or 0 for b in benches})
    fig, axes = _figure(columns=len(threads))
    axes = list(axes) if len(threads) > 1 else [axes]
    color = colors or palette(label(b.identity) for b in benches)
    for ax, t in zip(axes, threads, strict=True):
        for b in (b for b in benches if (b.settings.intra_op_threads or 0) == t):
            name = label(b.identity)
            runs = range(1, len(b.latencies_ms) + 1)
            ax.plot(runs, b.latencies_ms, lw=1, label=name, color=color[name])
        ax.set(xlabel="timed run", title=f"{t} thread{'s' if t != 1 else ''}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # runs are counted, not 2.5
        ax.grid(alpha=0.3)
    spread = max(b.infer.p50 for b in benches) / max(min(b.infer.p50 for b in benches), 1e-9)
    if spread > 8:
        axes[0].set_yscale("log")
    else:
        axes[0].set_ylim(bottom=0)
    axes[0].set_ylabel("inference latency (ms)")
    axes[-1].legend(fontsize="small")
    fig.suptitle("Latency per inference")
    fig.savefig(path)
    return path


def memory(
    benches: Sequence[BenchResult], path: Path, colors: dict[str, Any] | None = None
) -> Path:
    fig, ax = _figure()
    labels = bench_labels(benches)
    values = [b.peak_rss_bytes / 2**20 for b in benches]
    color = colors or palette(label(b.identity) for b in benches)
    bars = ax.barh(labels, values, color=[color[label(b.identity)] for b in benches])
    ax.bar_label(bars, fmt="%.0f MiB", fontsize="small")
    ax.set(xlabel="peak RSS (MiB)", title="Memory while benchmarking (whole process)")
    ax.invert_yaxis()
    ax.margins(x=0.15)  # room for the bar labels
    fig.savefig(path)
    return path


def confidence_cdf(
    evals: Sequence[EvalResult], path: Path, colors: dict[str, Any] | None = None
) -> Path:
    fig, ax = _figure()
    color = colors or palette(label(e.identity) for e in evals)
    for e in evals:
        x, cdf = e.confidence.cdf(CDF_MIN_CONFIDENCE)
        name = label(e.identity)
        ax.step(x, cdf, where="post", label=name, color=color[name])
    ax.set(
        xlabel="confidence",
        ylabel=f"fraction of detections ≥ {CDF_MIN_CONFIDENCE} scoring ≤ x",
        title="Confidence CDF",
        xlim=(CDF_MIN_CONFIDENCE, 1.0),
        ylim=(0, 1.01),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path)
    return path


def accuracy_vs_latency(
    points: Sequence[tuple[str, int | None, float, float]],
    path: Path,
    colors: dict[str, Any] | None = None,
) -> Path:
    """``points``: (model label, threads, p50 latency ms, mAP50-95); one marker per thread count."""
    fig, ax = _figure()
    color = colors or palette(p[0] for p in points)
    thread_counts = sorted({p[1] or 0 for p in points})
    marker = dict(zip(thread_counts, "os^Dv<>", strict=False))
    for name, threads, latency, accuracy in points:
        suffix = f" @{threads}t" if len(thread_counts) > 1 else ""
        ax.scatter(latency, accuracy, s=50, color=color[name], marker=marker.get(threads or 0, "o"),
                   label=name + suffix)  # fmt: skip
    ax.set(xlabel="p50 inference latency (ms)", ylabel="mAP50-95", title="Accuracy vs latency")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path)
    return path
