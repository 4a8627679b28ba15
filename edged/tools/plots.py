"""PNG plots for the report, drawn with matplotlib's object API (no pyplot, no global backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edged.tools.bench import BenchResult
from edged.tools.evaluate import EvalResult

# The CDF is drawn over detections at or above this confidence: at the eval threshold (0.001)
# thousands of near-zero candidates per image would flatten every curve against the y-axis.
CDF_MIN_CONFIDENCE = 0.05


def _figure(width: float = 7.0, height: float = 4.0):
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - exercised only without the extra
        from edged.tools.errors import ToolError

        raise ToolError("edged report needs matplotlib: pip install 'edged[tools]'") from None
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig, fig.add_subplot()


def label(identity: dict[str, str]) -> str:
    name, precision = identity["name"], identity["precision"]
    return name if precision in name else f"{name} ({precision})"


def bench_labels(benches: Sequence[BenchResult]) -> list[str]:
    """Model labels, with the thread count when the results mix thread counts."""
    mixed = len({b.settings.intra_op_threads for b in benches}) > 1
    return [
        label(b.identity) + (f" @{b.settings.intra_op_threads}t" if mixed else "") for b in benches
    ]


def latency_per_inference(benches: Sequence[BenchResult], path: Path) -> Path:
    fig, ax = _figure()
    for b, name in zip(benches, bench_labels(benches), strict=True):
        ax.plot(range(1, len(b.latencies_ms) + 1), b.latencies_ms, lw=1, label=name)
    ax.set(xlabel="timed run", ylabel="inference latency (ms)", title="Latency per inference")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path)
    return path


def memory(benches: Sequence[BenchResult], path: Path) -> Path:
    fig, ax = _figure()
    labels = bench_labels(benches)
    values = [b.peak_rss_bytes / 2**20 for b in benches]
    bars = ax.barh(labels, values, color="tab:purple")
    ax.bar_label(bars, fmt="%.0f MiB", fontsize="small")
    ax.set(xlabel="peak RSS (MiB)", title="Memory while benchmarking (whole process)")
    ax.invert_yaxis()
    fig.savefig(path)
    return path


def confidence_cdf(evals: Sequence[EvalResult], path: Path) -> Path:
    fig, ax = _figure()
    for e in evals:
        x, cdf = e.confidence.cdf(CDF_MIN_CONFIDENCE)
        ax.step(x, cdf, where="post", label=label(e.identity))
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


def accuracy_vs_latency(points: Sequence[tuple[str, float, float]], path: Path) -> Path:
    """``points``: (label, p50 latency ms, mAP50-95)."""
    fig, ax = _figure()
    for name, latency, accuracy in points:
        ax.scatter(latency, accuracy, s=40)
        ax.annotate(
            name, (latency, accuracy), textcoords="offset points", xytext=(5, 5), fontsize="small"
        )
    ax.set(xlabel="p50 inference latency (ms)", ylabel="mAP50-95", title="Accuracy vs latency")
    # Room on the right for the labels of the slowest points.
    ax.set_xlim(0, 1.35 * max(p[1] for p in points))
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path
