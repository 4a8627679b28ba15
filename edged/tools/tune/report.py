"""The tuning table (rows shared by the terminal and the Markdown), the report file and its plot.

With labelled data the accuracy section comes from ``edged report`` itself
(:func:`edged.tools.report.generate_report` on the evaluations), so its tables and confidence
plot read the same as a hand-made report; the tuning table, the pick and a speed/accuracy plot
are written beside it in ``tune.md``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edged.tools.tune.run import TuneOutcome, VariantOutcome, accuracy_points


def _p(summary: dict[str, Any] | None, key: str) -> float | None:
    return (summary or {}).get(key)


def rows(outcome: TuneOutcome) -> list[dict[str, Any]]:
    """One row per variant: the table printed, written and plotted."""
    out = []
    for o in outcome.variants:
        speed = o.speed or {}
        loss = outcome.choice.losses.get(o.planned.name)
        note = o.planned.reason or speed.get("reason") or (o.accuracy or {}).get("error") or ""
        if o.busy:
            note = f"busy machine ({o.other_cpu_percent:.0f}% of a CPU by others) {note}".strip()
        if o.cached:
            note = f"{note} (cached: {', '.join(o.cached)})".strip()
        if o.planned.made:
            note = f"made now; {note}".strip("; ")
        out.append(
            {
                "variant": o.planned.name
                + (" ✓" if o.planned.name == outcome.choice.variant else ""),
                "backend": o.planned.backend,
                "precision": o.planned.precision or "—",
                "pipeline FPS": o.fps,
                "e2e p50 ms": _p(speed.get("e2e_ms"), "p50"),
                "e2e p99 ms": _p(speed.get("e2e_ms"), "p99"),
                "infer p50 ms": _p(speed.get("infer_ms"), "p50"),
                outcome.metric: accuracy_points(o),
                "Δ pts": None if loss is None else (-loss or 0.0),
                "other CPU %": o.other_cpu_percent,
                "note": note,
            }
        )
    return out


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def markdown_table(table: Sequence[dict[str, Any]]) -> list[str]:
    header = list(table[0]) if table else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(r[h]) for h in header) + " |" for r in table]


def _machine(system: dict[str, Any]) -> list[str]:
    lines = [f"- CPU: {system.get('cpu_model')} ({system.get('logical_cpus')} logical)"]
    governors = sorted(set(system.get("governors", {}).values()))
    if governors:
        lines.append(f"- governor: {', '.join(governors)}")
    temps = system.get("temperature_c", {}).values()
    if temps:
        lines.append(f"- temperature at the start: {max(temps):.1f} °C")
    if system.get("load_average"):
        lines.append(f"- load average at the start: {system['load_average']}")
    return lines


def speed_accuracy_plot(outcome: TuneOutcome, path: Path) -> Path | None:
    """Pipeline FPS against accuracy, the budget as a band under the reference."""
    points = [(o.planned.name, o.fps, accuracy_points(o)) for o in outcome.variants]
    points = [(n, f, a) for n, f, a in points if f is not None and a is not None]
    if not points:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110, layout="constrained")
    ax = fig.subplots()
    for name, fps, acc in points:
        marker = "*" if name == outcome.choice.variant else "o"
        ax.scatter(fps, acc, s=140 if marker == "*" else 50, marker=marker)
        ax.annotate(name, (fps, acc), textcoords="offset points", xytext=(5, 4), fontsize="small")
    ref = next((a for n, _f, a in points if n == outcome.reference), None)
    if ref is not None:
        ax.axhspan(ref - outcome.budget, ref, alpha=0.12, label=f"budget {outcome.budget:g} pts")
        ax.legend(fontsize="small")
    ax.set(
        xlabel="daemon pipeline FPS",
        ylabel=f"{outcome.metric} (points)",
        title=f"{outcome.model}: speed vs accuracy",
    )
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def write_report(outcome: TuneOutcome, output_dir: Path, command: str = "") -> Path:
    """``tune.md`` (+ ``tune.json``, the plot, and ``report.md`` from ``edged report`` when
    there are mAP evaluations) in ``output_dir``; the Markdown's path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    table = rows(outcome)
    lines = [
        f"# edged tune: {outcome.model}",
        "",
        f"Generated {dt.datetime.now().isoformat(timespec='seconds')}"
        + (f" by `{command}`" if command else "")
        + ".",
        "",
    ]
    choice = outcome.choice
    lines += [
        f"**Choice: `{choice.variant}`** — {choice.reason} "
        f"(budget {outcome.budget:g} points of {outcome.metric} against "
        f"`{outcome.reference}`).",
        "",
    ]
    lines += ["## Variants", "", *markdown_table(table), ""]
    lines += [
        "Pipeline FPS and latencies are the daemon's own (`edged run`, lossless, as "
        "`edged bench pipeline` measures it); accuracy is "
        + (
            "mAP50-95 × 100 (`edged eval`'s protocol)."
            if outcome.metric == "mAP50-95"
            else "agreement × 100 with the reference on the calibration images (boxes "
            "matched at IoU ≥ 0.5, same class; 2·matched / all boxes)."
        ),
        "",
    ]
    lines += ["## Machine", "", *_machine(outcome.system), ""]
    if outcome.warnings:
        lines += ["**Warnings**", "", *(f"- {w}" for w in outcome.warnings), ""]
    plot = speed_accuracy_plot(outcome, output_dir / "tune_speed_accuracy.png")
    if plot is not None:
        lines += [f"![speed vs accuracy]({plot.name})", ""]
    evals = _evaluations(outcome.variants)
    if evals:
        from edged.tools.report import generate_report

        generate_report(evals, [], output_dir, title=f"edged tune: {outcome.model} accuracy")
        lines += ["Accuracy details (`edged report`): [report.md](report.md)", ""]
    (output_dir / "tune.json").write_text(json.dumps(to_record(outcome), indent=2, default=str))
    path = output_dir / "tune.md"
    path.write_text("\n".join(lines))
    return path


def _evaluations(variants: Sequence[VariantOutcome]) -> list[Any]:
    from edged.tools.evaluate import EvalResult

    return [
        EvalResult.from_dict(o.accuracy) for o in variants if o.accuracy and "metrics" in o.accuracy
    ]


def to_record(outcome: TuneOutcome) -> dict[str, Any]:
    return {
        "kind": "edged.tune",
        "version": 1,
        "model": outcome.model,
        "metric": outcome.metric,
        "budget": outcome.budget,
        "reference": outcome.reference,
        "choice": {
            "variant": outcome.choice.variant,
            "reason": outcome.choice.reason,
            "losses": outcome.choice.losses,
        },
        "system": outcome.system,
        "warnings": outcome.warnings,
        "variants": [
            {
                "name": o.planned.name,
                "backend": o.planned.backend,
                "precision": o.planned.precision,
                "skipped": o.planned.reason,
                "made": o.planned.made,
                "speed": o.speed,
                "accuracy": o.accuracy,
                "cached": list(o.cached),
            }
            for o in outcome.variants
        ],
    }
