"""Report generation from fixture results: tables, deltas against FP32, plots on disk."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edged.tools.errors import ToolError
from edged.tools.report import generate_report
from edged.tools.results import load_results, write_json
from tests.tools.results import bench_result, eval_result

pytest.importorskip("matplotlib", reason="matplotlib not installed (the [tools] extra)")

PRECISIONS = ("int8-dynamic", "fp32", "int8-static")
PNG = b"\x89PNG\r\n\x1a\n"


def _row(markdown: str, name: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_full_report_puts_variants_side_by_side(tmp_path: Path) -> None:
    write_json(tmp_path / "in" / "eval.json", [eval_result(p).to_dict() for p in PRECISIONS])
    benches = [bench_result(p, ("governor is ondemand",)).to_dict() for p in PRECISIONS]
    write_json(tmp_path / "in" / "bench.json", benches)
    evals, benches_loaded = load_results([tmp_path / "in"])
    report = generate_report(evals, benches_loaded, tmp_path / "out", title="T")

    md = report.markdown_path.read_text()
    assert md.startswith("# T")
    names = {p.name for p in report.plots}
    assert names == {"confidence_cdf.png", "latency_per_inference.png", "memory.png",
                     "accuracy_vs_latency.png"}  # fmt: skip
    for plot in report.plots:
        assert plot.read_bytes().startswith(PNG) and f"]({plot.name})" in md
    # FP32 first, then static, then dynamic, each compared with the FP32 source.
    order = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| yolov5n")]
    assert order[:3] == ["yolov5n", "yolov5n-int8-static", "yolov5n-int8-dynamic"]
    assert _row(md, "yolov5n-int8-static")[7] == "-0.6"  # Δ mAP50-95 in points
    static_speed = [row for row in md.splitlines() if row.startswith("| yolov5n-int8-static |")][1]
    assert "1.6" in static_speed  # 40 ms / 25 ms speed-up
    assert "governor is ondemand" in md
    assert "pinned to CPUs 0,1" in md


def test_eval_only_and_empty(tmp_path: Path) -> None:
    report = generate_report([eval_result("fp32")], [], tmp_path)
    assert [p.name for p in report.plots] == ["confidence_cdf.png"]
    assert "## Speed" not in report.markdown_path.read_text()
    with pytest.raises(ToolError, match="nothing to report"):
        generate_report([], [], tmp_path)


def test_speed_ups_compare_equal_thread_counts(tmp_path: Path) -> None:
    benches = [bench_result(p, threads=t) for t in (1, 2) for p in ("fp32", "int8-static")]
    md = generate_report([eval_result("fp32")], benches, tmp_path).markdown_path.read_text()
    static_rows = [row for row in md.splitlines() if row.startswith("| yolov5n-int8-static |")]
    # 40/25 ms at 2 threads and 80/50 ms at 1 thread: 1.6× both times, never 80/25.
    assert len(static_rows) == 2 and all("| 1.60× |" in row for row in static_rows)


def test_evaluations_of_different_image_sets_or_settings_are_never_compared(
    tmp_path: Path,
) -> None:
    quick = eval_result("fp32")
    quick = dataclasses.replace(
        quick,
        settings=dataclasses.replace(quick.settings, conf_threshold=0.25, max_images=10),
        metrics=dataclasses.replace(quick.metrics, num_images=10, map50_95=0.30),
    )
    evals = [eval_result("int8-static"), quick, eval_result("fp32")]
    md = generate_report(evals, [], tmp_path).markdown_path.read_text()
    assert "2 different image sets or settings" in md
    full, small = md.index("101 images, 716 labels"), md.index("10 images, 716 labels")
    assert full < small  # the full evaluation first
    # Static is compared with the FP32 of its own 101 images (-0.6), not the 10-image one.
    static_rows = [line for line in md.splitlines() if line.startswith("| yolov5n-int8-static |")]
    assert len(static_rows) == 1 and "| -0.6 |" in static_rows[0]
    fp32_rows = [line for line in md.splitlines() if line.startswith("| yolov5n |")]
    assert [md.index(row) > small for row in fp32_rows] == [False, True]


def test_each_model_has_one_colour_in_every_plot(tmp_path: Path, monkeypatch) -> None:
    """Read back what each figure drew (lines, CDF steps, bars, scatter markers): a model's
    colour is the same everywhere, and the models' colours differ."""
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    drawn: dict[str, Figure] = {}
    save = Figure.savefig

    def keep(fig: Figure, path, *args, **kwargs):
        drawn[Path(path).name] = fig
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    evals = [eval_result(p) for p in ("int8-static", "int8-dynamic")]  # a different order and
    benches = [bench_result(p) for p in PRECISIONS]  # set than the benches: still one palette
    generate_report(evals, benches, tmp_path)
    assert len(drawn) == 4, sorted(drawn)
    colours: dict[str, set[str]] = {}
    for fig in drawn.values():
        for ax in fig.axes:
            for line in ax.get_lines():
                colours.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
            for points in ax.collections:
                colours.setdefault(points.get_label(), set()).add(to_hex(points.get_facecolor()[0]))
            for container in ax.containers:  # the memory bars, labelled by the y ticks
                names = [t.get_text() for t in ax.get_yticklabels()]
                for name, bar in zip(names, container, strict=True):
                    colours.setdefault(name, set()).add(to_hex(bar.get_facecolor()))
    models = {name: c for name, c in colours.items() if not name.startswith("_")}
    assert len(models) == 3, models
    assert all(len(c) == 1 for c in models.values()), models
    assert len({next(iter(c)) for c in models.values()}) == 3


def test_the_same_fp32_file_on_two_backends_is_compared_with_onnxruntimes_run(tmp_path: Path):
    ort = eval_result("fp32")
    other = dataclasses.replace(
        ort,
        identity={**ort.identity, "backend": "openvino"},
        metrics=dataclasses.replace(ort.metrics, map50_95=ort.metrics.map50_95 + 0.004),
    )
    static = eval_result("int8-static")
    # The OpenVINO run comes last: it must not become the baseline of the others.
    report = generate_report([ort, static, other], [], tmp_path / "out", title="T")
    md = report.markdown_path.read_text()
    rows = [line for line in md.splitlines() if line.startswith("| yolov5n |")]
    cells = {row.split("|")[2].strip(): row for row in rows}
    assert set(cells) == {"onnxruntime", "openvino"}
    assert "| +0.0 |" in cells["onnxruntime"] and "| +0.4 |" in cells["openvino"]
    assert _row(md, "yolov5n-int8-static")[7] == "-0.6"
