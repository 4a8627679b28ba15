"""Stress the daemon's HTTP server the way issue 19 item 3 describes, and print the figures.

    PYTHONPATH=. python -m tests.tools.http_stress [--idle 500] [--slow 200] [--seconds 30]

A real daemon (synthetic source, the shared YOLOv5n) in a temporary directory; once it is
ready, ``--idle`` connections that never send and ``--slow`` ones that send a header byte a
second are held open (reopened when the server cuts them). Meanwhile /metrics and /readyz are
requested every half second. Printed: their response times (max, median), how many answered
200, and the supervisor's RSS before and at its highest during the run. A measurement, not a
test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from tests.daemon import Daemon
from tests.tools.http_load import Holders, raw_request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    config = {"source": {"uri": "synthetic:", "fps": 5}}
    with (
        tempfile.TemporaryDirectory(prefix="edged-stress-") as tmp,
        Daemon(Path(tmp), config=config) as daemon,
    ):
        daemon.wait_ready()
        supervisor = psutil.Process(daemon.pid)
        rss_before = supervisor.memory_info().rss
        times: dict[str, list[float]] = {"/metrics": [], "/readyz": []}
        ok = {path: 0 for path in times}
        peak = rss_before
        with Holders(daemon.http_port, args.idle, args.slow) as holders:
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                for path in times:
                    start = time.monotonic()
                    answer = raw_request(daemon.http_port, f"GET {path} HTTP/1.0\r\n\r\n"
                                         .encode())  # fmt: skip
                    times[path].append(time.monotonic() - start)
                    ok[path] += answer.startswith(b"HTTP/1.0 200")
                peak = max(peak, supervisor.memory_info().rss)
                time.sleep(0.5)
            held = holders.open
            reopened = holders.reopened
        result = {
            "idle": args.idle,
            "slow": args.slow,
            "held_at_end": held,
            "reopened_by_server_cuts": reopened,
            **{
                f"{p.strip('/')}_s": {
                    "max": round(max(t), 4),
                    "median": round(statistics.median(t), 4),
                    "answered_200": ok[p],
                    "requests": len(t),
                }
                for p, t in times.items()
            },
            "supervisor_rss_mb": {
                "before": round(rss_before / 2**20, 1),
                "peak": round(peak / 2**20, 1),
                "growth": round((peak - rss_before) / 2**20, 1),
            },
        }
        print(json.dumps(result, indent=2))
        daemon.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
