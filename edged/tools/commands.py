"""argparse wiring for ``edged export | quantize static|dynamic | eval | bench | report``.

Each handler imports its tool lazily, so ``edged run`` never loads matplotlib, pycocotools or
``onnxruntime.quantization``; each returns an exit code (0 ok, 2 user error).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edged.tools.argtypes import add_number, ranged
from edged.tools.backend_choice import split_backend
from edged.tools.errors import ToolError

Handler = Callable[[argparse.Namespace], int]


def _guarded(command: str) -> Callable[[Handler], Handler]:
    """Turn :class:`ToolError` into a one-line message and exit status 2."""

    def wrap(handler: Handler) -> Handler:
        def run(args: argparse.Namespace) -> int:
            try:
                return handler(args)
            except ToolError as exc:
                print(f"edged {command}: {exc}", file=sys.stderr)
                return 2

        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__
        return run

    return wrap


def _decimals(values: Sequence[Any]) -> int | None:
    """Decimals to show a float column with (its longest, rounded figures, up to 4), so
    0.538 and 0.5491 line up as 0.5380 and 0.5491; None for other columns."""
    floats = [v for v in values if isinstance(v, float)]
    if not floats:
        return None
    return min(4, max(len(f"{v:.4f}".rstrip("0").partition(".")[2]) for v in floats))


def _cell(value: Any, decimals: int | None) -> str:
    if decimals is not None and isinstance(value, float):
        return f"{value:.{decimals}f}"
    return str(value)


def _print_table(rows: Sequence[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    decimals = {c: _decimals([row[c] for row in rows]) for c in columns}
    for row in rows:
        table.add_row(*(_cell(row[c], decimals[c]) for c in columns))
    # Not a terminal (CI logs, pipes): rich would squeeze the table into 80 columns.
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _write_outputs(args: argparse.Namespace, records: list[dict], rows: list[dict]) -> None:
    from edged.tools.results import write_csv, write_json

    if args.json:
        print(f"wrote {write_json(args.json, records)}")
    if args.csv:
        print(f"wrote {write_csv(args.csv, rows)}")


def _cpu_list(text: str) -> tuple[int, ...]:
    """``0,2-3`` → (0, 2, 3)."""
    cpus: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CPU list: {text!r} (e.g. 0-3 or 0,2)") from None
    return tuple(sorted(set(cpus)))


def _batch_list(text: str) -> tuple[int, ...]:
    """``2,4`` → (2, 4): batch sizes for ``edged bench --batch`` (batch 1 always runs too)."""
    from edged.tools.batch_bench import MAX_BATCH

    try:
        sizes = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a list of batch sizes: {text!r} (e.g. 2,4)"
        ) from None
    if not sizes or sizes[0] < 1 or sizes[-1] > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"batch sizes must be 1..{MAX_BATCH}: {text!r}")
    return sizes


def _default_output(model: str, suffix: str) -> Path:
    p = Path(model)
    return p.with_name(f"{p.stem}-{suffix}.onnx")


# --- handlers -------------------------------------------------------------------------------


@_guarded("export")
def run_export(args: argparse.Namespace) -> int:
    """Export an Ultralytics detector to ONNX with a fixed input size; class names go into the
    model metadata. yolov8n.pt is downloaded by Ultralytics if absent; yolov8n.yaml builds an
    untrained model offline.
    """
    from edged.tools.export import export_ultralytics

    result = export_ultralytics(
        args.weights, args.output, imgsz=args.imgsz, opset=args.opset, simplify=args.simplify
    )
    print(
        f"exported {result.output_path} ({len(result.names)} classes, {result.duration_s} s); "
        f"sidecar {result.sidecar_path}"
    )
    return 0


@_guarded("convert ncnn")
def run_convert_ncnn(args: argparse.Namespace) -> int:
    """Convert an ONNX detector to NCNN (.param + .bin) with pnnx; class names and input size
    go into a sidecar JSON the NCNN backend reads.
    """
    from edged.tools.convert_ncnn import convert_ncnn

    output = args.output or Path(args.model).with_suffix(".ncnn.param")
    result = convert_ncnn(args.model, output)
    print(f"wrote {result.param_path} + {result.bin_path.name} ({result.duration_s} s); "
          f"sidecar {result.sidecar_path}")  # fmt: skip
    return 0


def _exclusion_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "keep_head_float": args.head_float,
        "head_levels": args.head_levels,
        "float_stem": args.float_stem,
        "exclude_nodes": tuple(args.exclude),
        "exclude_op_types": tuple(args.exclude_op_type),
        "preprocess": args.preprocess,
    }


def _print_quantized(result: Any) -> None:
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    memory = (
        f", peak memory {result.peak_rss_bytes / 2**20:.0f} MiB" if result.peak_rss_bytes else ""
    )
    print(
        f"wrote {result.output_path} ({result.precision}, {len(result.excluded_nodes)} nodes kept "
        f"float, {result.duration_s} s{memory}); sidecar {result.sidecar_path}"
    )


def _run_quantizer(
    quantize: Callable[..., Any],
    args: argparse.Namespace,
    suffix: str,
    *inputs: Any,
    **options: Any,
) -> int:
    """What both quantize modes share: the default output name, the flags both take, the summary."""
    result = quantize(
        args.model,
        args.output or _default_output(args.model, suffix),
        *inputs,
        per_channel=args.per_channel,
        weight_type=args.weight_type,
        **options,
        **_exclusion_kwargs(args),
    )
    _print_quantized(result)
    return 0


@_guarded("quantize static")
def run_quantize_static(args: argparse.Namespace) -> int:
    """Static INT8 quantization (QDQ, per-channel weights) calibrated on images letterboxed like
    the daemon's frames; the detection head stays float.
    """
    from edged.tools.quantize import quantize_static

    return _run_quantizer(
        quantize_static,
        args,
        "int8-static",
        args.calib,
        method=args.method,
        num_images=args.num_images,
        activation_type=args.activation_type,
        share_concat_scales=args.share_concat_scales,
        percentile=args.percentile,
        chunk=args.chunk,
        seed=args.seed,
        progress=args.progress,
    )


@_guarded("quantize dynamic")
def run_quantize_dynamic(args: argparse.Namespace) -> int:
    """Dynamic INT8 quantization: weights offline, activation ranges per run. Can be slower than
    FP32 on CPUs without fast integer convolutions: measure it.
    """
    from edged.tools.quantize import quantize_dynamic

    return _run_quantizer(quantize_dynamic, args, "int8-dynamic")


@_guarded("quantize openvino")
def run_quantize_openvino(args: argparse.Namespace) -> int:
    """OpenVINO INT8 (NNCF post-training quantization) into IR (.xml + .bin), calibrated on
    images letterboxed like the daemon's frames; the detection head stays float.
    """
    from edged.tools.quantize_accuracy import DEFAULT_MAX_DROP_POINTS, AccuracyControl
    from edged.tools.quantize_openvino import quantize_openvino

    accuracy = None
    if args.data is not None:
        max_drop = DEFAULT_MAX_DROP_POINTS if args.max_drop is None else args.max_drop
        accuracy = AccuracyControl(args.data, max_drop, args.max_images,
                                   ranking_images=args.ranking_images)  # fmt: skip
    else:
        for flag, value in (("--max-drop", args.max_drop), ("--max-images", args.max_images),
                            ("--ranking-images", args.ranking_images)):  # fmt: skip
            if value is not None:
                raise ToolError(f"{flag} needs --data (the labelled data.yaml whose mAP50-95 "
                                "NNCF's accuracy control keeps within --max-drop)")  # fmt: skip
    output = args.output or _default_output(args.model, "openvino-int8").with_suffix(".xml")
    result = quantize_openvino(
        args.model,
        output,
        args.calib,
        num_images=args.num_images,
        keep_head_float=args.head_float,
        head_levels=args.head_levels,
        float_stem=args.float_stem,
        preset=args.preset,
        seed=args.seed,
        progress=args.progress,
        accuracy=accuracy,
    )
    _print_quantized(result)
    return 0


@_guarded("eval")
def run_eval(args: argparse.Namespace) -> int:
    """Evaluate models the way the daemon runs them (letterbox, ONNX Runtime, decode, NMS) at
    conventional validation settings; mAP by pycocotools.
    """
    from edged.tools.dataset import load_dataset
    from edged.tools.evaluate import EvalSettings, evaluate

    dataset = load_dataset(args.data, args.split)
    settings = EvalSettings(
        conf_threshold=args.conf,
        iou_threshold=args.iou,
        max_detections=args.max_det,
        multi_label=args.multi_label,
        intra_op_threads=args.threads,
        max_images=args.max_images,
        backend=args.backend,
        backend_options=tuple(args.option),
    )
    results = [
        evaluate(m, dataset, settings, split=args.split, progress=args.progress)
        for m in args.models
    ]
    rows = [r.summary_row() for r in results]
    _print_table(rows, f"edged eval — {results[0].metrics.num_images} images, {args.data}")
    _write_outputs(args, [r.to_dict() for r in results], rows)
    return 0


@_guarded("bench")
def run_bench(args: argparse.Namespace) -> int:
    """Benchmark models one at a time, each in a fresh process: fixed threads, CPU pinning,
    warm-up excluded; records governor, clocks and temperature.
    """
    from edged.tools.bench import BenchSettings, benchmark_many

    settings = BenchSettings(
        intra_op_threads=args.threads,
        inter_op_threads=args.inter_threads,
        cpus=args.cpus,
        warmup=args.warmup,
        runs=args.runs,
        graph_optimization=args.graph_opt,
        spin_wait=args.spin,
        image=args.image,
        backend=args.backend,
        backend_options=tuple(args.option),
    )
    for model in args.models:
        if not split_backend(model)[1].is_file():
            raise ToolError(f"{model}: no such model file")
    if args.batch:
        return _run_bench_batches(args, settings)
    results = benchmark_many(args.models, settings, isolate=args.isolate, rounds=args.rounds)
    rows = [r.summary_row() for r in results]
    _print_table(rows, "edged bench — inference latency (ms), warm-up excluded")
    for warning in sorted({w for r in results for w in r.warnings}):
        print(f"warning: {warning}", file=sys.stderr)
    _write_outputs(args, [r.to_dict() for r in results], rows)
    return 0


def _run_bench_batches(args: argparse.Namespace, settings: Any) -> int:
    """``edged bench --batch``: each model at batch 1 and the given sizes, taking turns."""
    from edged.tools.batch_bench import benchmark_batches, benchmark_batches_isolated

    if args.rounds != 1:
        raise ToolError("--rounds does not apply with --batch (the batch sizes take turns call "
                        "by call in one process already)")  # fmt: skip
    run = benchmark_batches_isolated if args.isolate else benchmark_batches
    results = [run(model, args.batch, settings) for model in args.models]
    rows = [row for r in results for row in r.summary_rows()]
    _print_table(rows, "edged bench --batch — one call on N frames vs one per frame (ms)")
    for warning in sorted({w for r in results for w in r.warnings}):
        print(f"warning: {warning}", file=sys.stderr)
    _write_outputs(args, [r.to_dict() for r in results], rows)
    return 0


@_guarded("report")
def run_report(args: argparse.Namespace) -> int:
    """Turn `edged eval --json` and `edged bench --json` results into a Markdown report with
    plots, variants side by side with their FP32 source.
    """
    from edged.tools.report import generate_report
    from edged.tools.results import load_results

    evals, benches = load_results(args.results)
    report = generate_report(evals, benches, args.output_dir, title=args.title)
    print(
        json.dumps({"report": str(report.markdown_path), "plots": [str(p) for p in report.plots]})
    )
    return 0


# --- parsers --------------------------------------------------------------------------------

# Integer types a quantized tensor may take (ONNX Runtime's QuantType, lower-case).
_QUANT_TYPES = ("uint8", "int8")


def _add_command(
    sub: argparse._SubParsersAction, name: str, func: Handler, summary: str
) -> argparse.ArgumentParser:
    """A leaf subcommand: its parser, with ``func`` set so ``edged`` can dispatch to it.

    ``summary`` is the line in the parent's ``--help``; the handler's docstring is the
    command's own ``--help`` description (as ``edged``'s module docstring is its own).
    """
    p = sub.add_parser(name, help=summary, description=func.__doc__)
    p.set_defaults(func=func)
    return p


def _add_threads(p: argparse.ArgumentParser, summary: str) -> None:
    """``--threads`` (ORT intra-op threads) of ``eval`` and ``bench``; each words its default."""
    p.add_argument("--threads", type=ranged(int, 1), default=None, help=summary)


_MODELS_HELP = (
    "model files, side by side: .onnx (ONNX Runtime), .xml (OpenVINO IR), .param (NCNN); "
    "BACKEND:FILE picks the backend, e.g. openvino:model.onnx"
)


def _add_backend_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        default=None,
        help="run every model on this backend (default: by file suffix or BACKEND: prefix)",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        type=_backend_option,
        metavar="KEY=VALUE",
        help="a backend option (inference.<backend>.KEY), e.g. fp16_storage=true or "
        "execution_mode=accuracy; repeatable",
    )


def _backend_option(text: str) -> tuple[str, Any]:
    from edged.tools.backend_choice import parse_option

    try:
        return parse_option(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_progress_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", dest="progress", action="store_false")


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, help="write the full results (a JSON list) here")
    p.add_argument("--csv", type=Path, help="write one summary row per model here")


def _add_exclusion_flags(p: argparse.ArgumentParser, head_levels: int) -> None:
    p.add_argument(
        "--no-head-float",
        dest="head_float",
        action="store_false",
        help="quantize the detection head too (collapses YOLO accuracy; for experiments)",
    )
    p.add_argument(
        "--head-levels",
        type=ranged(int, 0),
        default=head_levels,
        metavar="K",
        help=f"also keep K rings of Conv layers before the head in float (default {head_levels})",
    )
    p.add_argument(
        "--float-stem",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the Conv reading the image (≤ 4 channels) in float: faster on x86 (default on)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NODE",
        help="keep this node in float (repeatable; names as in the pre-processed graph)",
    )
    p.add_argument(
        "--exclude-op-type",
        action="append",
        default=[],
        metavar="OP",
        help="keep every node of this op type in float (repeatable)",
    )
    p.add_argument(
        "--no-preprocess",
        dest="preprocess",
        action="store_false",
        help="skip ONNX Runtime's quant_pre_process (shape inference + optimisation)",
    )
    p.add_argument("-o", "--output", type=Path, help="output model path")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = _add_command(
        sub, "export", run_export, "Ultralytics weights → ONNX (needs the [export] extra)"
    )
    p.add_argument("weights", help="a .pt file, an Ultralytics model name, or a model .yaml")
    p.add_argument("-o", "--output", type=Path, help="output .onnx path")
    p.add_argument("--imgsz", type=int, default=640, help="square input size (default 640)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: Ultralytics')")
    p.add_argument(
        "--no-simplify", dest="simplify", action="store_false", help="skip the graph simplifier"
    )


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an ONNX model to another runtime's format")
    formats = p.add_subparsers(dest="convert_format", metavar="{ncnn}", required=True)
    n = _add_command(formats, "ncnn", run_convert_ncnn, "NCNN .param + .bin through pnnx")
    n.add_argument("model", help="ONNX model with a static input")
    n.add_argument("-o", "--output", type=Path, help="output .param (default: MODEL.ncnn.param)")


def _add_quantize(sub: argparse._SubParsersAction) -> None:
    from edged.tools.presets import RECOMMENDED_STATIC as preset

    p = sub.add_parser("quantize", help="INT8 variants of an FP32 ONNX model")
    modes = p.add_subparsers(
        dest="quantize_mode", metavar="{static,dynamic,openvino}", required=True
    )

    s = _add_command(
        modes, "static", run_quantize_static, "static INT8 (QDQ) with calibration images"
    )
    s.add_argument("model", help="FP32 ONNX model")
    s.add_argument("--calib", required=True, type=Path, help="folder of calibration images")
    s.add_argument(
        "--method",
        choices=("minmax", "entropy", "percentile"),
        default=preset.method,
        help="calibration method (default %(default)s)",
    )
    add_number(s, "--num-images", int, preset.num_images, "calibration images, a seeded sample", 1)
    add_number(s, "--percentile", float, preset.percentile, "for --method percentile", 50, 100)
    add_number(s, "--chunk", int, preset.chunk, "images per calibration chunk; bounds memory", 1)
    s.add_argument("--activation-type", choices=_QUANT_TYPES, default=preset.activation_type)
    s.add_argument("--weight-type", choices=_QUANT_TYPES, default="int8")
    s.add_argument(
        "--share-concat-scales",
        action=argparse.BooleanOptionalAction,
        default=preset.share_concat_scales,
        help="one scale for all tensors a Concat joins, so ONNX Runtime copies them instead of "
        "re-quantizing: ~5 %% faster, ~0.5 point mAP50-95 lower on yolov5n (default off)",
    )
    s.add_argument(
        "--no-per-channel",
        dest="per_channel",
        action="store_false",
        help="one scale per weight tensor",
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the image sample")
    _add_progress_flag(s)
    _add_exclusion_flags(s, preset.head_levels)

    d = _add_command(
        modes, "dynamic", run_quantize_dynamic, "dynamic INT8 (weights only, no calibration)"
    )
    o = _add_command(
        modes, "openvino", run_quantize_openvino, "OpenVINO INT8 IR with NNCF (calibration images)"
    )
    o.add_argument("model", help="FP32 ONNX model")
    o.add_argument("--calib", required=True, type=Path, help="folder of calibration images")
    add_number(o, "--num-images", int, 128, "calibration images, a seeded sample", 1)
    o.add_argument("--preset", choices=("mixed", "performance"), default="mixed",
                   help="NNCF preset: mixed = asymmetric activations (default)")  # fmt: skip
    o.add_argument("--head-float", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the detection head float (default on)")  # fmt: skip
    add_number(o, "--head-levels", int, 0, "Conv rings before the head kept float too", 0)
    o.add_argument("--float-stem", action=argparse.BooleanOptionalAction, default=False,
                   help="keep the image-reading Conv float (default off)")  # fmt: skip
    o.add_argument("--seed", type=int, default=0, help="seed of the image sample")
    o.add_argument("-o", "--output", type=Path, help="output .xml path")
    o.add_argument("--data", help="data.yaml (or a folder holding one): NNCF's accuracy control "
                   "reverts layers to float until edged's mAP50-95 on its val split is within "
                   "--max-drop of FP32's")  # fmt: skip
    o.add_argument("--max-drop", type=ranged(float, 0, 100), default=None,
                   help="largest mAP50-95 drop allowed, in points (1.0 = 0.340 → 0.330; "
                   "default 1.0 with --data)")  # fmt: skip
    o.add_argument("--max-images", type=ranged(int, 1), default=None,
                   help="validate on the first N images of --data (default all)")  # fmt: skip
    o.add_argument("--ranking-images", type=ranged(int, 1), default=None,
                   help="rank layers to revert on the N images INT8 hurts most (default: all; "
                   "fewer bound the time when layers must be reverted)")  # fmt: skip
    _add_progress_flag(o)

    d.add_argument("model", help="FP32 ONNX model")
    d.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    d.add_argument("--weight-type", choices=_QUANT_TYPES, default="int8")
    _add_exclusion_flags(d, 0)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = _add_command(
        sub, "eval", run_eval, "precision, recall, mAP50, mAP50-95 of models on a YOLO dataset"
    )
    p.add_argument("models", nargs="+", help=_MODELS_HELP)
    p.add_argument("--data", required=True, help="data.yaml (or a folder holding one)")
    p.add_argument("--split", default="val", help="data.yaml split (default %(default)s)")
    add_number(p, "--conf", float, 0.001, "confidence threshold", 0, 1)
    add_number(p, "--iou", float, 0.6, "NMS IoU threshold", 0, 1)
    add_number(p, "--max-det", int, 300, "detections per image", 1)
    p.add_argument(
        "--single-label",
        dest="multi_label",
        action="store_false",
        help="one class per box (predict-style) instead of val-style multi-label",
    )
    _add_threads(p, "inference threads")
    _add_backend_flags(p)
    p.add_argument(
        "--max-images", type=ranged(int, 1), default=None, help="evaluate the first N only"
    )
    _add_progress_flag(p)
    _add_output_flags(p)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = _add_command(sub, "bench", run_bench, "latency under a locked execution policy")
    p.add_argument("models", nargs="+", help=_MODELS_HELP)
    _add_threads(p, "inference threads (default: number of pinned CPUs)")
    _add_backend_flags(p)
    add_number(p, "--inter-threads", int, 1, "inter-op threads", 1)
    p.add_argument(
        "--cpus",
        type=_cpu_list,
        default=None,
        help="pin to these CPUs, e.g. 0-3 or 2,3 (default: all allowed)",
    )
    add_number(p, "--warmup", int, 10, "untimed runs first", 0)
    add_number(p, "--runs", int, 100, "timed runs per round", 1)
    add_number(
        p,
        "--rounds",
        int,
        1,
        "repeat the model list round-robin this many times and pool the runs: fairer "
        "comparisons on a machine whose load changes",
        1,
    )
    p.add_argument("--image", help="image to run (default: a synthetic 1280×720 frame)")
    p.add_argument(
        "--batch",
        type=_batch_list,
        default=(),
        metavar="N[,N...]",
        help="also run N frames per call (e.g. 2,4) and report per-frame time and frames/s next "
        "to batch 1, taking turns call by call (inference only; ONNX Runtime or OpenVINO, a "
        "model with a dynamic batch axis); --runs counts calls per batch size",
    )
    p.add_argument("--graph-opt", choices=("disable", "basic", "extended", "all"), default="all")
    p.add_argument(
        "--spin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let ORT threads spin-wait inside a run (default: on, ORT's own default)",
    )
    p.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="run every model in this process (default: a fresh process each)",
    )
    _add_output_flags(p)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = _add_command(sub, "report", run_report, "Markdown + PNG report from eval/bench JSON")
    p.add_argument("results", nargs="+", help="result JSON files or folders of them")
    p.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=Path("report"),
        help="where report.md and the PNGs go (default ./report)",
    )
    p.add_argument("--title", default="edged model report")


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export``, ``quantize {static,dynamic,openvino}``, ``convert ncnn``, ``eval``,
    ``bench``, ``report``."""
    _add_export(subparsers)
    _add_quantize(subparsers)
    _add_convert(subparsers)
    _add_eval(subparsers)
    _add_bench(subparsers)
    _add_report(subparsers)
