"""The `edged` command line: run, ctl, subscribe, config, models and the tool commands."""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, get_args

from edged import __version__
from edged.config import (
    ConfigError,
    PipelineLayout,
    apply_overrides,
    load_config,
)

log = logging.getLogger("edged")

# Sub-command groups that live in their own modules; each exposes register_commands(subparsers).
_PLUGGABLE = (
    "edged.tools",
    "edged.service_install",
    "edged.doctor",
    "edged.integrations.frigate.command",
    "edged.tracking.commands",
    "edged.tools.tune.command",
    "edged.tools.shadow_bench",
)


# `edged run` flag (argparse dest) → dotted config field it overrides.
RUN_FLAG_FIELDS: dict[str, str] = {
    "source": "source.uri",
    "mode": "source.mode",
    "variant": "model.variant",
    "labels": "model.labels",
    "models_dir": "model.models_dir",
    "conf": "postprocess.conf_threshold",
    "publish": "publish.endpoint",
    "format": "publish.format",
    "wait_subscribers": "publish.wait_for_subscribers",
    "http_port": "http.port",
    "http_host": "http.host",
    "camera_id": "camera_id",
    "runtime_dir": "runtime.runtime_dir",
    "log_level": "runtime.log_level",
    "layout": "pipeline.layout",
}


def thread_overrides(threads: int) -> dict[str, int]:
    """``--threads N`` as the thread option of every backend that has one."""
    from edged.backends.registry import plugins

    return {f"inference.{spec.name}.{spec.threads_field}": threads
            for spec in plugins().values() if spec.threads_field}  # fmt: skip


def flag_overrides(args: argparse.Namespace, fields: dict[str, str]) -> dict[str, Any]:
    """The flags given (``fields``: argparse dest → dotted config field), and ``--model`` /
    ``--manifest``, as dotted config overrides."""
    overrides: dict[str, Any] = {
        field: getattr(args, dest)
        for dest, field in fields.items()
        if getattr(args, dest) is not None
    }
    if getattr(args, "threads", None) is not None:  # one budget, whichever CPU runtime serves
        overrides.update(thread_overrides(args.threads))
    # --model and --manifest each replace the other (a config allows only one).
    if args.model is not None:
        overrides.update({"model.path": args.model, "model.manifest": None})
    if args.manifest is not None:
        overrides.update({"model.manifest": args.manifest, "model.path": None})
    return overrides


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line flags of ``edged run`` as dotted config overrides."""
    overrides = flag_overrides(args, RUN_FLAG_FIELDS)
    if args.loop:
        overrides["source.loop"] = True
    if args.exit_at_end:
        overrides["pipeline.exit_at_end"] = True
    return overrides


def cmd_run(args: argparse.Namespace) -> int:
    from edged.control import check_curve_keys
    from edged.logs import configure_logging

    overrides = run_overrides(args)
    try:
        config = load_config(args.config)
        if overrides:
            config = apply_overrides(config, overrides)
        check_curve_keys(config.control, args.config or "config")
        check_curve_keys(config.publish, args.config or "config", "publish")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(config.runtime.log_level, process_name="supervisor")
    # A watchdog SIGABRT or a hang then leaves every thread's stack in the journal.
    faulthandler.enable()
    from edged.models import ModelError
    from edged.pipeline.supervisor import Supervisor

    try:
        supervisor = Supervisor(config, Path(args.config) if args.config else None,
                                overrides=overrides)  # fmt: skip
    except (ModelError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
    return supervisor.run()


def cmd_config_check(args: argparse.Namespace) -> int:
    """Exit 0 when ``edged run`` would accept the file, 2 (as run does) when it would not."""
    from edged.control import check_curve_keys
    from edged.models import ModelError, resolve_from_config
    from edged.monitor.reference import resolve_reference
    from edged.pipeline.supervisor import pipeline_mode

    try:
        config = load_config(args.file)
        pipeline_mode(config, args.file)
        check_curve_keys(config.control, args.file)
        check_curve_keys(config.publish, args.file, "publish")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not args.no_model:  # what run resolves at start: manifest, variant, file (not loaded)
        try:
            resolved = resolve_from_config(config.model)
            resolve_reference(config, args.file)  # monitor.shadow.variant, when enabled
        except ModelError as exc:
            print(f"{args.file}: model: {exc} (--no-model checks the file alone)", file=sys.stderr)
            return 2
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(f"model: {resolved.name}/{resolved.variant} → {resolved.path}")
    print(f"{args.file}: OK")
    if args.show:
        import yaml

        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return 0


def control_endpoint(args: argparse.Namespace) -> str:
    if args.endpoint:
        return args.endpoint
    from edged.pipeline.endpoints import Endpoints
    from edged.pipeline.runtime_dir import running_dirs, temp_prefix

    config = load_config(args.config) if args.config else None
    if config is not None and config.control.endpoint:
        return config.control.endpoint
    if config is not None and config.runtime.runtime_dir:
        return Endpoints(Path(config.runtime.runtime_dir)).control
    found = running_dirs()
    if len(found) > 1:  # several daemons, each in its own temporary directory
        dirs = ", ".join(map(str, found))
        raise ConfigError([("runtime.runtime_dir", f"several edged run here ({dirs}): pick one "
                            "with --endpoint ipc://<dir>/control.sock")], "edged ctl")  # fmt: skip
    # None found: the standard place's name, so "not running" names where it looked.
    fallback = Path(tempfile.gettempdir(), temp_prefix() + "*")
    return Endpoints(found[0] if found else fallback).control


def cmd_ctl(args: argparse.Namespace) -> int:
    import zmq

    from edged.control import NotRunning, call

    if bool(args.client_key) != bool(args.server_key):
        print("edged ctl: --client-key and --server-key go together (CURVE needs both)",
              file=sys.stderr)  # fmt: skip
        return 2
    curve = (Path(args.client_key), Path(args.server_key)) if args.client_key else None
    try:
        endpoint = control_endpoint(args)
    except ConfigError as exc:
        print(f"edged ctl: {exc}", file=sys.stderr)
        return 2
    try:
        result = call(endpoint, args.command, getattr(args, "variant", None), args.timeout, curve)
    except (TimeoutError, NotRunning) as exc:
        print(f"edged ctl: {exc}", file=sys.stderr)
        return 1
    except (zmq.ZMQError, OSError, ValueError) as exc:  # a bad endpoint or key file
        print(f"edged ctl: {endpoint}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0 if result.get("ok") else 1


def cmd_schema(args: argparse.Namespace) -> int:
    from edged.publish.schema import JSON_SCHEMA
    from edged.tracking.events import EVENTS_JSON_SCHEMA

    print(json.dumps(EVENTS_JSON_SCHEMA if args.topic == "events" else JSON_SCHEMA, indent=2))
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    import zmq

    from edged.publish.subscriber import subscribe

    if args.client_key and not args.server_key:
        print("edged subscribe: --client-key needs --server-key (CURVE)", file=sys.stderr)
        return 2
    curve = None
    if args.server_key:
        curve = (Path(args.server_key), Path(args.client_key) if args.client_key else None)
    try:
        topic = "events." if args.events and args.topic == "detections." else args.topic
        return subscribe(args.address, topic, args.count, args.raw, args.timeout,
                         args.latest, curve)  # fmt: skip
    except (zmq.ZMQError, OSError, ValueError) as exc:  # a bad endpoint or key file
        print(f"edged subscribe: {args.address}: {exc}", file=sys.stderr)
        return 2


def cmd_models_list(args: argparse.Namespace) -> int:
    from edged.models_commands import print_catalog

    return print_catalog(Path(args.models_dir), with_hash=not args.no_hash)


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from edged.models_commands import fetch

    return fetch(Path(args.models_dir), args.name, args.variant, args.insecure)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The model, threads and threshold flags that ``flag_overrides`` maps (run, serve-detector)."""
    parser.add_argument(
        "--model", "-m", help="a single model file (.onnx/.xml/.param/.hef), no manifest"
    )
    parser.add_argument("--manifest", help="model manifest name or path")
    parser.add_argument("--variant", help="manifest variant to start with")
    parser.add_argument("--labels", help="class names file (data.yaml or one per line)")
    parser.add_argument("--models-dir", help="directory models may be loaded from")
    parser.add_argument("--threads", type=int, help="inference threads (every CPU backend)")
    parser.add_argument("--conf", type=float, help="confidence threshold")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edged", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (supervisor + stage processes)")
    run.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    run.add_argument("--source", "-s", help="video file, rtsp://..., /dev/video0, 0, "
                     "picamera2:, synthetic:")  # fmt: skip
    run.add_argument("--mode", choices=["auto", "live", "realtime", "lossless"])
    run.add_argument("--loop", action="store_true", help="loop a file source")
    add_model_flags(run)
    run.add_argument("--publish", help="ZeroMQ PUB endpoint (default tcp://127.0.0.1:5555)")
    run.add_argument("--format", choices=["json", "msgpack"])
    run.add_argument("--wait-subscribers", type=int, metavar="N",
                     help="hold the first message until N subscribers joined")  # fmt: skip
    run.add_argument("--http-port", type=int)
    run.add_argument("--http-host")
    run.add_argument("--camera-id")
    run.add_argument("--runtime-dir")
    run.add_argument("--exit-at-end", action="store_true", help="exit when a file ends")
    run.add_argument("--layout", choices=get_args(PipelineLayout),
                     help="stages per process: fused (default) or one process each")  # fmt: skip
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.set_defaults(func=cmd_run)

    config = sub.add_parser("config", help="configuration helpers")
    config_sub = config.add_subparsers(dest="config_cmd", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("file")
    check.add_argument("--show", action="store_true", help="print the effective config")
    check.add_argument("--no-model", action="store_true",
                       help="do not look for the model files (checking a config for another "
                            "machine)")  # fmt: skip
    check.set_defaults(func=cmd_config_check)

    ctl = sub.add_parser("ctl", help="control a running daemon")
    ctl.add_argument("--endpoint", help="control endpoint (default: the runtime dir's ipc)")
    ctl.add_argument("--config", "-c", help="read the endpoint from this config")
    ctl.add_argument("--timeout", type=float, default=120.0)
    ctl.add_argument("--client-key", help="CURVE client secret key file (tcp:// endpoints)")
    ctl.add_argument("--server-key", help="CURVE server public key file (tcp:// endpoints)")
    ctl_sub = ctl.add_subparsers(dest="command", required=True)
    ctl_sub.add_parser("status", help="active model, fps, each camera, stages (JSON)")
    swap = ctl_sub.add_parser("swap", help="switch the model variant while running")
    swap.add_argument("variant")
    ctl_sub.add_parser("reload", help="re-read the config file (like SIGHUP)")
    ctl.set_defaults(func=cmd_ctl)

    subscribe = sub.add_parser("subscribe", help="print detections as they arrive")
    subscribe.add_argument("address", nargs="?", default="tcp://127.0.0.1:5555")
    subscribe.add_argument("--topic", default="detections.", help="topic prefix")
    subscribe.add_argument("--count", type=int, default=0, help="stop after N messages")
    subscribe.add_argument("--raw", action="store_true", help="print the JSON payload")
    subscribe.add_argument("--timeout", type=float, default=0, help="give up after N s idle")
    subscribe.add_argument("--latest", action="store_true",
                           help="show only the newest message, skipping a backlog (for readers "
                                "slower than the camera)")  # fmt: skip
    subscribe.add_argument(
        "--server-key",
        metavar="FILE",
        help="the publisher's CURVE public key file (publish.curve_*)",
    )
    subscribe.add_argument("--client-key", metavar="FILE",
                           help="this client's CURVE secret key file, one of the publisher's "
                                "authorized keys (default: a throwaway key, for a publisher "
                                "with allow_any_client)")  # fmt: skip
    subscribe.add_argument(
        "--events",
        action="store_true",
        help="print the track events (topic events.) instead of detections",
    )
    subscribe.set_defaults(func=cmd_subscribe)
    schema = sub.add_parser("schema", help="print the JSON Schema of the detection messages")
    schema.add_argument(
        "topic",
        nargs="?",
        choices=("detections", "events"),
        default="detections",
        help="whose schema: detections.* or events.*",
    )
    schema.set_defaults(func=cmd_schema)

    models = sub.add_parser("models", help="model manifests and variant files")
    models.add_argument("--models-dir", default="models")
    models_sub = models.add_subparsers(dest="models_cmd", required=True)
    listing = models_sub.add_parser("list", help="variants, presence, size, sha256")
    listing.add_argument("--no-hash", action="store_true")
    listing.set_defaults(func=cmd_models_list)
    fetch = models_sub.add_parser("fetch", help="obtain a variant file (local copy or download)")
    fetch.add_argument("name")
    fetch.add_argument("--variant", default="fp32")
    fetch.add_argument("--insecure", action="store_true",
                       help="allow plain http:// (the sha256 is still checked)")  # fmt: skip
    fetch.set_defaults(func=cmd_models_fetch)

    for module_name in _PLUGGABLE:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # an optional part missing must not break the daemon
            log.debug("%s unavailable: %s", module_name, exc)
            continue
        register = getattr(module, "register_commands", None)
        if register is not None:
            register(sub)
    try:
        from edged.tools.pipeline_bench import register_pipeline_bench
    except ImportError as exc:
        log.debug("bench-pipeline unavailable: %s", exc)
    else:
        register_pipeline_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["bench", "pipeline"]:  # `edged bench pipeline` = `edged bench-pipeline`
        argv = ["bench-pipeline", *argv[2:]]
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
