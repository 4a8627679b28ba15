"""A real Prometheus scrapes a real edged; every dashboard query must return data.

Prometheus (the Debian ``prometheus`` package, installed by .ci/setup) runs on loopback with a
config derived from configs/prometheus.yml (target rewritten to the daemon's port, 1 s scrapes),
while edged plays the test video in a loop. After a hot swap (so the swap panels have something
to show), every PromQL expression of configs/grafana/dashboards/edged.json is evaluated through
``/api/v1/query`` with Grafana's variables substituted, and every query variable through the
label-values API, as Grafana would.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon import (
    REPO_ROOT,
    VIDEO,
    Daemon,
    free_port,
    http_get,
    poll_until,
    require,
    terminate,
)
from tests.grafana import DASHBOARD, load_generator

pytestmark = pytest.mark.integration

PROMETHEUS_YML = REPO_ROOT / "configs" / "prometheus.yml"

# Panels whose queries may legitimately come back empty on a CI machine, with the reason. They
# must still be valid PromQL (Prometheus answers "success"), and must have data where the
# reason does not hold (they are checked for data whenever Prometheus returns some).
EXEMPT: dict[str, str] = {
    "SoC temperature": "no /sys/class/thermal zone off a Raspberry Pi (or in a container)",
    "Throttling": "vcgencmd get_throttled exists only on a Raspberry Pi",
}


gen = load_generator()


class Prometheus:
    """A throwaway Prometheus server on loopback scraping one edged instance."""

    def __init__(self, tmp_path: Path, target: str, binary: str) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "prometheus.log"
        config = yaml.safe_load(PROMETHEUS_YML.read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "edged"]
        job.update(scrape_interval="1s", scrape_timeout="1s")
        job["static_configs"] = [{"targets": [target]}]
        self.config_path = tmp_path / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.argv = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)  # fmt: skip
        log.close()
        poll_until(self._ready, 120, lambda: self._with_log("Prometheus did not become ready"))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        terminate(self.proc)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(self._with_log(f"prometheus exited ({self.proc.returncode})"))
        with contextlib.suppress(OSError):
            return http_get(self.url + "/-/ready", timeout=2)[0] == 200
        return False

    def _with_log(self, message: str) -> str:
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        return f"{message}\n--- prometheus log ---\n{tail}"

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout=10)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"{path} {params} → HTTP {status}: {answer}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query now; the result vector (scalar results come back as one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one sample, and at least one that is a number (not NaN from 0/0 or no rate)."""
    return any(not math.isnan(float(r["value"][1])) for r in result)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Prometheus]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus binary not found: apt-get install prometheus (.ci/setup does)")
    video = require(VIDEO)
    tmp = tmp_path_factory.mktemp("prometheus")
    # Tracking on, so the counts row has data: zones and lines with label filters have their
    # series (at 0) from the start; tracks appear within the video's first seconds.
    labels = ["person", "bicycle", "car"]
    tracking = {
        "enabled": True,
        "zones": [{"name": "lot", "polygon": [[0, 0], [1, 0], [1, 1]], "labels": labels}],
        "lines": [{"name": "east", "points": [[0.85, 0], [0.85, 1]], "labels": labels}],
    }
    # The shadow monitor against the served file itself (model.path: variant "default"),
    # pooling every check, so its panels have figures once one checked frame had boxes; at
    # normal priority so it checks on a busy machine too, within 10 % of inference time.
    shadow = {"enabled": True, "every_s": 1, "variant": "default", "window": 10000,
              "priority": "normal", "max_cost_percent": 10}  # fmt: skip
    config = {"tracking": tracking, "monitor": {"shadow": shadow}}
    with Daemon(tmp / "edged", "--source", str(video), "--loop", config=config) as daemon:
        # Prometheus starts while edged does: its first scrapes fail, then it catches on.
        with Prometheus(tmp, f"127.0.0.1:{daemon.http_port}", binary) as prom:
            daemon.wait_ready(timeout=120)
            flowing = 'rate(edged_frames_total{job="edged",stage="publish",outcome="ok"}[15s]) > 0'
            poll_until(lambda: prom.query(flowing), 30,
                       lambda: prom._with_log("Prometheus never saw frames flowing"))  # fmt: skip
            # A hot swap (same file, reloaded) and a refused one, while Prometheus watches.
            assert daemon.ctl("swap", "default")["ok"] is True
            assert daemon.ctl("swap", "no-such-variant")["ok"] is False
            swapped = "increase(edged_model_swaps_total{result='ok'}[1m]) > 0"
            poll_until(lambda: prom.query(swapped), 15, "Prometheus never saw the swap")
            shifted = 'edged_shadow_agreement{measure="confidence_shift"}'
            poll_until(lambda: prom.query(shifted), 120, "no shadow check matched a box")
            yield daemon, prom
        assert daemon.stop() == 0


def test_prometheus_scrapes_edged_cleanly(stack: tuple[Daemon, Prometheus]) -> None:
    daemon, prom = stack

    def edged_target() -> dict:
        targets = prom.api("targets")["activeTargets"]
        (target,) = [t for t in targets if t["labels"]["job"] == "edged"]
        return target

    # Health is the last scrape's: one answer slower than the 1 s scrape timeout on a busy
    # machine is not a failure; a target that never scrapes cleanly is.
    target = poll_until(lambda: (t := edged_target())["health"] == "up" and t, 60,
                        lambda: f"the edged target is not up: {edged_target()}", 0.5)  # fmt: skip
    assert target["scrapeUrl"] == f"http://127.0.0.1:{daemon.http_port}/metrics"
    # Histogram series are well-formed in Prometheus' eyes: quantiles come out as finite,
    # positive seconds (how many depends on the machine's speed, so no bound on the value).
    p99 = prom.query("histogram_quantile(0.99, sum by (le) "
                     "(rate(edged_end_to_end_latency_seconds_bucket[15s])))")  # fmt: skip
    assert has_data(p99) and 0 < float(p99[0]["value"][1]) < math.inf


def test_every_dashboard_query_returns_data(stack: tuple[Daemon, Prometheus]) -> None:
    _daemon, prom = stack
    dash = json.loads(DASHBOARD.read_text())
    queries = list(gen.iter_queries(dash))
    assert {q.panel for q in queries} >= set(EXEMPT), "stale exemption list"
    pending = {(q.panel, q.ref): gen.substitute(q.expr, dash) for q in queries}
    exempt_empty: dict[tuple[str, str], str] = {}
    last: dict[tuple[str, str], list] = {}

    def evaluate() -> bool:
        # Some panels need a rate window with detections in it; retry the empty ones a while.
        for key, expr in list(pending.items()):
            result = prom.query(expr)  # raises unless Prometheus parsed and ran it
            last[key] = result
            if has_data(result):
                del pending[key]
                exempt_empty.pop(key, None)
            elif key[0] in EXEMPT:
                exempt_empty[key] = expr
                del pending[key]
        return not pending

    def report() -> str:
        lines = [f"{panel} [{ref}]: {pending[(panel, ref)]}\n    → {last.get((panel, ref))}"
                 for panel, ref in pending]  # fmt: skip
        return "dashboard queries without data:\n" + "\n".join(lines)

    poll_until(evaluate, 120, report, interval=1.0)  # bounds a hang, not a speed
    # Exempt panels must be exactly the ones the reasons explain (no silent gaps elsewhere).
    assert {panel for panel, _ref in exempt_empty} <= set(EXEMPT)


def test_every_dashboard_variable_has_values(stack: tuple[Daemon, Prometheus]) -> None:
    """Query variables go through the label-values API, as Grafana's label_values() does."""
    daemon, prom = stack
    dash = json.loads(DASHBOARD.read_text())
    variables = list(gen.variable_queries(dash))
    assert variables
    for q in variables:
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q.expr)
        assert match, f"{q.panel}: not a label_values() query: {q.expr}"
        selector = gen.substitute(match.group(1), dash)
        values = prom.api(f"label/{match.group(2)}/values", **{"match[]": selector})
        assert values, f"{q.panel}: no values for {q.expr}"
        if match.group(2) == "instance":
            assert values == [f"127.0.0.1:{daemon.http_port}"]
