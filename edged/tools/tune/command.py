"""argparse wiring for ``edged tune``; everything heavy is imported when the command runs."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from edged.tools.argtypes import add_number, ranged
from edged.tools.errors import ToolError


def cmd_tune(args: argparse.Namespace) -> int:
    """Measure every variant of a model on this device (the daemon's own pipeline FPS and
    latency under the thread budget, and mAP50-95 on --data or agreement with FP32 on the
    --calib images), pick the fastest within --budget points, print the table and write a
    report; --apply writes the pick into --config and hot-swaps the running daemon.
    """
    try:
        return _tune(args)
    except ToolError as exc:
        print(f"edged tune: {exc}", file=sys.stderr)
        return 2


def _source(args: argparse.Namespace) -> str:
    if args.source:
        return str(args.source)
    if args.config:
        from edged.config import ConfigError, load_config

        try:
            return load_config(args.config).source.uri
        except ConfigError as exc:
            raise ToolError(str(exc)) from None
    raise ToolError("give --source VIDEO (or --config, whose source.uri is used)")


def _tune(args: argparse.Namespace) -> int:
    from edged.models import ModelError
    from edged.tools.tune.cache import ResultCache
    from edged.tools.tune.measure import TuneSettings
    from edged.tools.tune.report import rows, write_report
    from edged.tools.tune.run import run_tune

    if args.apply and not args.config:
        raise ToolError("--apply needs --config FILE (the config to set model.variant in)")
    if not args.data and not args.calib:
        print(
            "edged tune: no --data and no --calib: accuracy is unknown, only the reference "
            "can be picked",
            file=sys.stderr,
        )
    settings = TuneSettings(
        source=_source(args),
        threads=args.threads,
        frames=args.frames,
        warmup=args.warmup,
        data=str(args.data) if args.data else None,
        calib=str(args.calib) if args.calib else None,
        max_images=args.max_images,
    )
    cache = ResultCache(args.cache_dir, reuse=not args.fresh)
    with _Progress(args.progress) as progress:
        try:
            outcome = run_tune(
                args.manifest,
                Path(args.models_dir),
                settings,
                args.budget,
                reference=args.reference,
                only=tuple(args.variant),
                result_cache=cache,
                step=progress.step,
                say=progress.say,
            )
        except ModelError as exc:
            raise ToolError(str(exc)) from None
    _print_table(
        rows(outcome),
        f"edged tune — {outcome.model}, budget {args.budget:g} points of {outcome.metric}",
    )
    for warning in outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    output = args.output or Path("tune-report") / outcome.model
    report = write_report(outcome, output, "edged tune " + shlex.join(sys.argv[2:]))
    print(f"choice: {outcome.choice.variant} — {outcome.choice.reason}")
    print(f"report: {report}")
    if args.apply:
        return _apply(args, outcome.choice.variant)
    return 0 if outcome.choice.variant else 1


def _apply(args: argparse.Namespace, variant: str | None) -> int:
    import zmq

    from edged.cli import control_endpoint
    from edged.config import ConfigError
    from edged.tools.tune.apply import apply_to_config, swap_running

    if variant is None:
        print("edged tune: nothing to apply (no variant was picked)", file=sys.stderr)
        return 1
    changed = apply_to_config(Path(args.config), variant)
    print(f"{args.config}: model.variant = {variant}" + ("" if changed else " (already)"))
    try:
        endpoint = control_endpoint(argparse.Namespace(endpoint=args.endpoint, config=args.config))
        reply = swap_running(endpoint, variant)
    except (ConfigError, TimeoutError, zmq.ZMQError, OSError) as exc:
        print(f"edged tune: swap: {exc}", file=sys.stderr)
        return 1
    if reply is None:
        print("no running daemon: the config names the variant for its next start")
        return 0
    print(f"swap: {reply}")
    return 0 if reply.get("ok") else 1


def _print_table(table: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from edged.tools.tune.report import cell

    t = Table(title=title)
    for column in table[0] if table else []:
        t.add_column(column, justify="left" if column in ("variant", "note") else "right")
    for row in table:
        t.add_row(*(cell(v) for v in row.values()))
    Console(width=None if sys.stdout.isatty() else 200).print(t)


class _Progress:
    """A rich progress line on stderr: which variant is being measured, and how far along."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("planning", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def step(self, variant: str, what: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"{variant}: {what}", advance=1)

    def say(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(message)
        else:
            print(message, file=sys.stderr)


def register_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="pick the fastest variant within an accuracy budget",
        description=cmd_tune.__doc__,
    )
    p.set_defaults(func=cmd_tune)
    p.add_argument("--manifest", required=True, help="model manifest: a name or a .yaml path")
    p.add_argument("--models-dir", default="models", help="model directory (default models)")
    p.add_argument(
        "--calib",
        type=Path,
        help="calibration images: makes missing variants, and "
        "without --data is where agreement with FP32 is measured",
    )
    p.add_argument("--data", type=Path, help="YOLO data.yaml: accuracy is mAP50-95 on it")
    add_number(p, "--budget", float, 1.0, "accuracy points a variant may lose", 0)
    p.add_argument("--source", help="video the daemon reads (default: --config's source.uri)")
    p.add_argument(
        "--threads",
        type=ranged(int, 1),
        default=None,
        help="thread budget of every backend (default: the daemon's)",
    )
    add_number(p, "--frames", int, 300, "timed frames per variant", 2)
    add_number(p, "--warmup", int, 10, "frames before timing starts", 0)
    p.add_argument(
        "--max-images",
        type=ranged(int, 1),
        default=None,
        help="images for accuracy / agreement (default: all)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="tune only these variants (repeatable; the reference always runs)",
    )
    p.add_argument(
        "--reference", default="fp32", help="the variant losses are measured against (default fp32)"
    )
    p.add_argument("-o", "--output", type=Path, help="report folder (default tune-report/<model>)")
    p.add_argument("--cache-dir", type=Path, help="results cache (default: edged's cache dir)")
    p.add_argument("--fresh", action="store_true", help="measure again, ignoring the cache")
    p.add_argument(
        "--apply",
        action="store_true",
        help="set model.variant in --config and hot-swap the running daemon",
    )
    p.add_argument("--config", "-c", help="the daemon's config file (--apply, --source)")
    p.add_argument("--endpoint", help="control endpoint (default: from --config)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
