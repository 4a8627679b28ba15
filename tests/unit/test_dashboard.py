"""The Grafana dashboard and provisioning files: structure Grafana 10+ imports, valid queries
that only name metrics edged really exports, and configs that agree with each other.

Whether every query returns data is checked against a real Prometheus in
tests/integration/test_prometheus_dashboard.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from edged.config import HttpConfig
from edged.metrics import Metrics, ProcessCollector
from edged.monitor.agreement import Agreement
from edged.monitor.judge import ShadowJudge
from edged.monitor.messages import ShadowReport
from edged.monitor.metrics import ShadowMetrics
from edged.pi_health import PiHealthCollector
from edged.tracking.result import TrackingSummary
from tests.grafana import DASHBOARD, GRAFANA, load_generator
from tests.paths import REPO_ROOT

PROMETHEUS_YML = REPO_ROOT / "configs" / "prometheus.yml"

gen = load_generator()


@pytest.fixture(scope="module")
def dash() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    panels = list(dash["panels"])
    for panel in dash["panels"]:
        panels.extend(panel.get("panels", []))
    return panels


def exported_sample_names(tmp_path: Path) -> set[str]:
    """Every sample name edged's registry can expose, Pi-only collectors included (faked)."""
    metrics = Metrics()
    metrics.registry.register(ProcessCollector(lambda: [("supervisor", 1)]))
    zone = tmp_path / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("48000\n")
    (zone / "type").write_text("cpu-thermal\n")
    metrics.registry.register(PiHealthCollector(tmp_path, lambda: "throttled=0x0\n"))
    # Labelled families expose nothing until a child exists; create the ones runtime creates.
    metrics.set_active_model("yolov5n", "fp32", "onnxruntime", "fp32")
    metrics.prepare_labels(["person"])
    crossing = ("door", "person", "left_to_right")
    metrics.record_tracking(TrackingSummary((("person", 1),), (("lot", "person", 1),), (crossing,),
                                            0.0001))  # fmt: skip
    report = ShadowReport("checked", 1, "cam0", "fp32", Agreement(1, 1, 1, 1.0, 0.0), 0, 0.1, 1.0)
    ShadowMetrics(metrics.registry).record(ShadowJudge(3, 0.8).take(report))  # monitor.shadow
    return {s.name for family in metrics.registry.collect() for s in family.samples}


def test_committed_json_is_what_the_generator_writes() -> None:
    assert DASHBOARD.read_text() == gen.render(), (
        "configs/grafana/dashboards/edged.json is stale: "
        "run python3 configs/grafana/generate_dashboard.py"
    )


def test_grafana_10_import_essentials(dash: dict[str, Any]) -> None:
    assert dash["schemaVersion"] >= 38
    assert dash["uid"] == "edged" and dash["title"] == "edged"
    assert "id" not in dash or dash["id"] is None, "a fixed dashboard id breaks import"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_panel_ids_unique_and_grid_positions_sane(dash: dict[str, Any]) -> None:
    panels = all_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        g = panel["gridPos"]
        assert g["w"] >= 1 and g["h"] >= 1 and g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells


def test_every_panel_queries_prometheus_through_the_variable(dash: dict[str, Any]) -> None:
    for panel in all_panels(dash):
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel.get("description"), panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no query"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"{panel['title']}: duplicate refIds"
        for tgt in targets:
            assert tgt["expr"].strip(), f"{panel['title']} {tgt['refId']}: empty expr"
            assert tgt["datasource"]["uid"] == "${datasource}"


def test_expressions_are_balanced_and_use_known_variables(dash: dict[str, Any]) -> None:
    queries = [*gen.iter_queries(dash), *gen.variable_queries(dash)]
    assert len(queries) >= 25
    pairs = {"(": ")", "[": "]", "{": "}"}
    for q in queries:
        expr = gen.substitute(q.expr, dash)  # KeyError on an undefined $variable
        stack: list[str] = []
        for ch in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):  # brackets inside strings don't count
            if ch in pairs:
                stack.append(pairs[ch])
            elif ch in pairs.values():
                assert stack and stack.pop() == ch, f"{q.panel}: unbalanced {ch} in {expr}"
        assert not stack, f"{q.panel}: unclosed bracket in {expr}"
        assert expr.count('"') % 2 == 0, f"{q.panel}: unbalanced quote in {expr}"
        assert "$" not in expr, f"{q.panel}: unsubstituted variable in {expr}"


def test_expressions_only_name_metrics_edged_exports(dash: dict[str, Any], tmp_path: Path) -> None:
    exported = exported_sample_names(tmp_path)
    used: set[str] = set()
    for q in [*gen.iter_queries(dash), *gen.variable_queries(dash)]:
        names = set(re.findall(r"\bedged_[a-z0-9_]+", q.expr))
        assert names, f"{q.panel}: names no edged metric: {q.expr}"
        unknown = names - exported
        assert not unknown, f"{q.panel}: {sorted(unknown)} not exported by edged"
        used |= names
    # What the issue asks the dashboard to show, by the metric behind it.
    required = {
        "edged_frames_total",  # FPS per stage, drops
        "edged_stage_latency_seconds_bucket",  # p50/p95/p99 per stage
        "edged_end_to_end_latency_seconds_bucket",  # p50/p95/p99 end to end
        "edged_detection_confidence_bucket",  # confidence heatmap
        "edged_detections_total",  # per-label detection rates
        "edged_model_info",  # active variant
        "edged_model_swaps_total",  # swaps
        "edged_stage_restarts_total",  # restarts
        "edged_source_reconnects_total",  # reconnects
        "edged_process_resident_memory_bytes",  # memory per process
        "edged_soc_temperature_celsius",  # temperature
        "edged_throttled",  # throttling
    }
    assert required <= used, f"dashboard lacks {sorted(required - used)}"


def test_heatmap_reads_buckets_as_a_heatmap(dash: dict[str, Any]) -> None:
    heatmaps = [p for p in all_panels(dash) if p["type"] == "heatmap"]
    assert heatmaps
    for panel in heatmaps:
        assert panel["options"]["calculate"] is False  # buckets come from Prometheus
        for tgt in panel["targets"]:
            assert tgt["format"] == "heatmap" and "_bucket" in tgt["expr"]
            assert "sum by (le)" in tgt["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed "
                    "(Debian package prometheus; .ci/setup installs it)")  # fmt: skip
def test_promtool_parses_every_expression(dash: dict[str, Any], tmp_path: Path) -> None:
    """promtool's parser is Prometheus' own: any PromQL syntax error fails here, offline."""
    rules = [
        {"record": f"edged:dashboard_query:{i}", "expr": gen.substitute(q.expr, dash)}
        for i, q in enumerate(gen.iter_queries(dash))
    ]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_substitute_follows_grafana_syntax(dash: dict[str, Any]) -> None:
    assert gen.substitute('x{i=~"$instance"}[$__rate_interval]', dash) == 'x{i=~".*"}[15s]'
    assert gen.substitute("${label} [[instance]] ${label:regex}", dash) == ".* .* .*"
    assert gen.substitute("[$__range]", dash, {"__range": "1h"}) == "[1h]"
    with pytest.raises(KeyError):
        gen.substitute("$nosuchvar", dash)


def test_provisioning_matches_dashboard_and_prometheus_config(dash: dict[str, Any]) -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/edged.yaml").read_text())
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/edged.yaml").read_text())
    prometheus = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert datasources["apiVersion"] == 1 and providers["apiVersion"] == 1
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["access"] == "proxy"
    variable = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")
    assert variable["current"]["value"] == ds["uid"]
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]

    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "edged"]
    assert job["scrape_interval"] == "5s" and job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"localhost:{HttpConfig().port}"]
    # Grafana sizes $__rate_interval from timeInterval: it must be the real scrape interval.
    assert ds["jsonData"]["timeInterval"] == job["scrape_interval"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_prometheus_yml() -> None:
    done = subprocess.run(["promtool", "check", "config", str(PROMETHEUS_YML)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def camera_labelled_families() -> set[str]:
    """The families edged's registry labels by camera, read from the registry itself."""
    metrics = Metrics()
    metrics.use_cameras(["front"])
    metrics.prepare_labels(["person"])  # the label families' children, as at runtime
    metrics.source_fps.labels("front").set(30.0)  # set once the source opens
    return {family.name + ("_total" if family.type == "counter" else "")
            for family in metrics.registry.collect()
            if any(s.labels.get("camera") == "front" for s in family.samples)}  # fmt: skip


def test_every_camera_labelled_series_follows_the_camera_picker(dash: dict[str, Any]) -> None:
    families = camera_labelled_families()
    assert set(gen.CAMERA_FAMILIES) == families  # the generator's list is the registry's
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["camera"]["includeAll"] and variables["camera"]["allValue"] == ".*"
    names = "|".join(families)
    pattern = re.compile(r"\b(" + names + r")(?:_bucket|_sum|_count)?\{([^}]*)\}")
    seen = 0
    for q in gen.iter_queries(dash):
        for match in pattern.finditer(q.expr):
            assert 'camera=~"$camera"' in match.group(2), f"{q.panel}: {match.group(0)}"
            seen += 1
    assert seen >= 15
    titles = {p["title"] for p in all_panels(dash)}
    assert {"Published FPS by camera", "Sources connected by camera"} <= titles
