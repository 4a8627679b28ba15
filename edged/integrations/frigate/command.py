"""``edged serve-detector``: the command line of the Frigate detector server."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edged.config import EdgedConfig
    from edged.http_server import HttpServer
    from edged.integrations.frigate.server import DetectorServer
    from edged.sdnotify import SystemdNotifier

log = logging.getLogger("edged")

# flag (argparse dest) → dotted config field it overrides
FLAG_FIELDS: dict[str, str] = {
    "endpoint": "detector.endpoint",
    "control_endpoint": "detector.control_endpoint",
    "timeout_ms": "detector.timeout_ms",
    "pixel_format": "detector.pixel_format",
    "variant": "model.variant",
    "labels": "model.labels",
    "models_dir": "model.models_dir",
    "conf": "postprocess.conf_threshold",
    "http_port": "http.port",
    "http_host": "http.host",
    "runtime_dir": "runtime.runtime_dir",
    "log_level": "runtime.log_level",
}


def cmd_serve_detector(args: argparse.Namespace) -> int:
    from edged.cli import flag_overrides
    from edged.config import ConfigError, apply_overrides, load_config
    from edged.logs import configure_logging
    from edged.sdnotify import SystemdNotifier

    notifier = SystemdNotifier()  # a no-op unless started as a Type=notify unit
    try:
        config = load_config(args.config)
        if changes := flag_overrides(args, FLAG_FIELDS):
            config = apply_overrides(config, changes)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(config.runtime.log_level, process_name="detector")
    import zmq

    from edged.backends import BackendError
    from edged.integrations.frigate.server import DetectorServer
    from edged.models import ModelError

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = DetectorServer(config)
    except ModelError as exc:
        log.error("%s", exc)
        return 2
    http = None
    try:
        server.start()
        if args.labelmap_out:
            write_labelmap(server, Path(args.labelmap_out))
        http = start_http(server, config)
        notifier.ready(server.status_line())
        server.serve(stop, on_turn=watchdog_pinger(notifier))
        notifier.stopping()
    except (BackendError, OSError, zmq.ZMQError) as exc:
        log.error("cannot serve: %s", exc)
        return 1
    finally:
        if http is not None:
            http.stop()
        server.close()
    log.info("stopped")
    return 0


def write_labelmap(server: DetectorServer, path: Path) -> None:
    """``<class id> <name>`` lines of the served model: Frigate's labelmap_path format."""
    assert server.engine is not None
    labels = server.engine.model.labels
    path.write_text("".join(f"{i} {name}\n" for i, name in enumerate(labels)))
    log.info("wrote the %d class names to %s", len(labels), path)


def start_http(server: DetectorServer, config: EdgedConfig) -> HttpServer | None:
    """/metrics, /healthz, /readyz (ready: a model serves) on http.host:http.port."""
    from edged.http_server import HttpServer, http_limits

    if not config.http.enabled:
        return None

    def probe() -> tuple[bool, str]:
        return server.engine is not None, server.status_line()

    http = HttpServer(config.http.host, config.http.port, server.metrics.edged.registry, probe,
                      probe, limits=http_limits(config.http),
                      allowed_hosts=config.http.allowed_hosts)  # fmt: skip
    http.start()
    log.info("metrics on http://%s:%d/metrics", config.http.host, http.port)
    return http


def watchdog_pinger(notifier: SystemdNotifier) -> Callable[[], None] | None:
    """Pings systemd's watchdog from the serving loop (WatchdogSec=), so a hung loop is
    restarted; None when no watchdog was asked for."""
    interval = notifier.watchdog_interval()
    if interval is None:
        return None
    last = [0.0]

    def ping() -> None:
        now = time.monotonic()
        if now - last[0] >= interval:
            notifier.watchdog()
            last[0] = now

    return ping


def register_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``edged serve-detector`` to the CLI's subcommands."""
    from edged.cli import add_model_flags

    p = subparsers.add_parser(
        "serve-detector",
        help="answer Frigate's zmq detector with an edged model",
        description="Serve Frigate's zmq detector protocol (REQ [header JSON, tensor] → "
        "float32 20×6 [class, score, y1, x1, y2, x2]) with an edged model and backend.",
    )
    p.add_argument("--config", "-c", help="YAML config (model, inference, postprocess, "
                   "http, runtime and detector sections are used)")  # fmt: skip
    p.add_argument("--endpoint", help="ZeroMQ address to bind (default "
                   "ipc://<runtime_dir>/detector.sock)")  # fmt: skip
    p.add_argument("--control-endpoint", help="ipc:// address for edged ctl (status, swap)")
    p.add_argument("--timeout-ms", type=int, help="Frigate's request timeout (default 200)")
    p.add_argument("--pixel-format", choices=["rgb", "bgr"])
    add_model_flags(p)
    p.add_argument("--http-port", type=int, help="/metrics port (default http.port, 9108)")
    p.add_argument("--http-host")
    p.add_argument("--runtime-dir")
    p.add_argument(
        "--labelmap-out",
        metavar="FILE",
        help="write the model's class ids and names for Frigate's labelmap_path",
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_serve_detector)
