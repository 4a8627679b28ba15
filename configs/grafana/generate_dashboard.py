#!/usr/bin/env python3
"""Generate configs/grafana/dashboards/edged.json, the Grafana dashboard for edged.

Plain Python, standard library only, so it runs anywhere (no grafanalib pin to keep up with
Grafana's schema). The JSON it writes is committed; tests/unit/test_dashboard.py fails when the
committed file and this script disagree, and tests/integration/test_prometheus_dashboard.py
evaluates every query against a real Prometheus scraping a real edged.

    python3 configs/grafana/generate_dashboard.py          # rewrite the JSON
    python3 configs/grafana/generate_dashboard.py --check  # exit 1 if it is stale

Conventions: every query filters on ``instance=~"$instance"`` (one edged per instance) and, on
the families with a ``camera`` label, on ``camera=~"$camera"`` (added by :func:`target`), uses
``$__rate_interval`` for rates (the provisioned datasource declares the 5 s scrape interval, so
Grafana picks a window of at least four scrapes), and aggregates away labels a panel does not
show, so a second Prometheus job scraping the same target cannot double a line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

OUT = Path(__file__).resolve().parent / "dashboards" / "edged.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
STAGES = ("capture", "preprocess", "infer", "postprocess", "publish")

Panel = dict[str, Any]


# The families edged labels by camera (edged/metrics.py): their panels follow the camera picker.
CAMERA_FAMILIES = (
    "edged_stage_latency_seconds",
    "edged_end_to_end_latency_seconds",
    "edged_frames_total",
    "edged_detections_total",
    "edged_detection_confidence",
    "edged_source_reconnects_total",
    "edged_source_connected",
    "edged_source_fps",
)
_CAMERA_SELECTOR = re.compile(
    r"\b((?:" + "|".join(CAMERA_FAMILIES) + r")(?:_bucket|_sum|_count)?)\{" + re.escape(SEL)
)


def by_camera(expr: str) -> str:
    """``expr`` with the camera picker on every camera-labelled series it reads."""
    return _CAMERA_SELECTOR.sub(lambda m: f'{m.group(1)}{{{SEL}, camera=~"$camera"', expr)


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "refId": ref,
        "expr": by_camera(expr),
        "legendFormat": legend or "__auto",
        "range": True,
        **extra,
    }


def targets(*specs: tuple[str, str]) -> list[dict[str, Any]]:
    """Targets from (expr, legend) pairs, refIds A, B, C ..."""
    return [target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(specs)]


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def timeseries(title: str, description: str, tgts: list, unit: str, **opts: Any) -> Panel:
    custom = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
    custom.update(opts.pop("custom", {}))
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": tgts,
        "fieldConfig": {
            "defaults": {"unit": unit, "custom": custom, **opts.pop("defaults", {})},
            "overrides": opts.pop("overrides", []),
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        **opts,
    }


def range_count(title: str, description: str, counter: str, by: str | None = None,
                alert: str | None = None) -> Panel:  # fmt: skip
    """A stat of how often ``counter`` went up in the dashboard's time range (per ``by`` label
    value when given), coloured ``alert`` from the first occurrence."""
    grouping = f" by ({by}) " if by else ""
    defaults: dict[str, Any] = {"decimals": 0}
    if alert:
        defaults["thresholds"] = thresholds((None, "green"), (1, alert))
    legend = f"{{{{{by}}}}}" if by else ""  # Grafana's {{label}}
    expr = f"sum{grouping}(increase({counter}{{{SEL}}}[$__range]))"
    return stat(
        title,
        description,
        [target(expr, legend)],
        defaults=defaults,
        **({"text_mode": "value_and_name"} if by else {}),
    )


def unstacked_line(series: str) -> dict[str, Any]:
    """A field override: ``series`` drawn as a plain line over a stacked panel's areas."""
    return {
        "matcher": {"id": "byName", "options": series},
        "properties": [
            {"id": "custom.stacking", "value": {"mode": "none", "group": "B"}},
            {"id": "custom.fillOpacity", "value": 0},
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
        ],
    }


def stat(title: str, description: str, tgts: list, unit: str = "none", **opts: Any) -> Panel:
    defaults = {"unit": unit, **opts.pop("defaults", {})}
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "textMode": opts.pop("text_mode", "auto"),
            "orientation": "auto",
        },
        **opts,
    }


def quantile(q: float, metric: str, by: str) -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{{{SEL}}}[$__rate_interval])))"
    )


def with_widths(panels: list[Panel], widths: tuple[int, ...]) -> list[Panel]:
    """Give a row's panels their own widths (out of 24) instead of an even split."""
    for panel, width in zip(panels, widths, strict=True):
        panel["width"] = width
    return panels


# -- panels, row by row ------------------------------------------------------------------------


def overview() -> list[Panel]:
    ok_or_bad = {
        "type": "value",
        "options": {
            "0": {"text": "no", "color": "green", "index": 0},
            "1": {"text": "YES", "color": "red", "index": 1},
        },
    }
    panels = [
        stat(
            "Published FPS",
            "Frames whose detections went out over ZeroMQ, per second.",
            [
                target(
                    f'sum(rate(edged_frames_total{{{SEL}, stage="publish", outcome="ok"}}'
                    f"[$__rate_interval]))"
                )
            ],
            "none",
            defaults={"decimals": 1, "thresholds": thresholds((None, "red"), (1, "green"))},
        ),
        stat(
            "End-to-end p95",
            "95th percentile of end-to-end latency: end of the source read → publish.",
            [target(quantile(0.95, "edged_end_to_end_latency_seconds", "le"))],
            "s",
            defaults={"thresholds": thresholds((None, "green"), (0.5, "orange"), (1, "red"))},
        ),
        stat(
            "Active model",
            "The variant serving frames (edged_model_info): name/variant, backend, precision.",
            [
                target(
                    f"max by (name, variant, backend, precision) (edged_model_info{{{SEL}}}) == 1",
                    "{{name}}/{{variant}} · {{backend}} · {{precision}}",
                )
            ],
            text_mode="name",
            defaults={"color": {"mode": "fixed", "fixedColor": "blue"}},
        ),
        stat(
            "Source",
            "1 while the source delivers frames; 0 after it ended or while reconnecting.",
            [target(f"min(edged_source_connected{{{SEL}}})")],
            defaults={
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "0": {"text": "disconnected", "color": "red", "index": 0},
                            "1": {"text": "connected", "color": "green", "index": 1},
                        },
                    }
                ],
            },
        ),
        stat(
            "Subscribers",
            "ZeroMQ subscriptions to the detections (edged_subscribers); preview viewers are not "
            "counted. 0: nobody receives what edged publishes.",
            [target(f"max(edged_subscribers{{{SEL}}})")],
            defaults={"decimals": 0, "thresholds": thresholds((None, "orange"), (1, "green"))},
        ),
        stat(
            "Uptime",
            "Time since the daemon started (edged_start_time_seconds).",
            [target(f"time() - max(edged_start_time_seconds{{{SEL}}})")],
            "s",
        ),
        stat(
            "SoC temperature",
            "Hottest thermal zone (Raspberry Pi 5: cpu-thermal). The firmware starts to throttle "
            "at 80 °C. No data off a Pi.",
            [target(f"max(edged_soc_temperature_celsius{{{SEL}}})")],
            "celsius",
            defaults={"thresholds": thresholds((None, "green"), (70, "orange"), (80, "red"))},
        ),
        stat(
            "Throttling",
            "vcgencmd get_throttled: conditions active now, and whether they occurred since "
            "boot. Under-voltage means a weak power supply. No data off a Pi.",
            targets(
                (f"max by (condition) (edged_throttled{{{SEL}}})", "{{condition}} now"),
                (
                    f"max by (condition) (edged_throttled_occurred{{{SEL}}})",
                    "{{condition}} since boot",
                ),
            ),
            defaults={"mappings": [ok_or_bad]},
            text_mode="value_and_name",
        ),
    ]
    return with_widths(panels, (3, 3, 4, 3, 2, 2, 3, 4))


def throughput() -> list[Panel]:
    return [
        timeseries(
            "Frames per second by stage",
            "Frames each stage finished (outcome ok). In live mode later stages may run slower "
            "than capture; the difference shows up as drops.",
            [
                target(
                    f'sum by (stage) (rate(edged_frames_total{{{SEL}, outcome="ok"}}'
                    "[$__rate_interval]))",
                    "{{stage}}",
                )
            ],
            "none",
        ),
        timeseries(
            "Dropped and failed frames",
            "Frames skipped (latest-frame-wins in live mode) or failed, by stage and outcome.",
            [
                target(
                    f"sum by (stage, outcome) (rate(edged_frames_total{{{SEL}, "
                    'outcome=~"dropped|error"}[$__rate_interval]))',
                    "{{stage}} {{outcome}}",
                )
            ],
            "none",
        ),
        timeseries(
            "Published FPS by camera",
            "Frames each camera got published, per second: with several cameras on one "
            "inference stage they take turns, so a camera far below the others is starved.",
            [
                target(
                    f'sum by (camera) (rate(edged_frames_total{{{SEL}, stage="publish", '
                    'outcome="ok"}[$__rate_interval]))',
                    "{{camera}}",
                )
            ],
            "none",
        ),
        timeseries(
            "Sources connected by camera",
            "1 while a camera's source delivers frames; a camera at 0 is reconnecting alone "
            "(the others keep flowing).",
            [target(f"max by (camera) (edged_source_connected{{{SEL}}})", "{{camera}}")],
            "none",
            defaults={"min": 0, "max": 1, "decimals": 0},
        ),
        timeseries(
            "Queue depth",
            "Frames waiting in front of each stage at its last report.",
            [target(f"max by (stage) (edged_queue_depth{{{SEL}}})", "{{stage}}")],
            "none",
        ),
        timeseries(
            "Published bytes",
            "Payload bytes per second sent to subscribers.",
            [
                target(
                    f"sum(rate(edged_published_bytes_total{{{SEL}}}[$__rate_interval]))", "bytes/s"
                )
            ],
            "Bps",
        ),
    ]


def mean_rate(histogram: str, selector: str, aggregate: str) -> str:
    """Mean of a histogram's observations over the rate window."""
    return (
        f"{aggregate} (rate({histogram}_sum{{{selector}}}[$__rate_interval])) / "
        f"{aggregate} (rate({histogram}_count{{{selector}}}[$__rate_interval]))"
    )


def latency() -> list[Panel]:
    e2e = "edged_end_to_end_latency_seconds"
    stage = "edged_stage_latency_seconds"
    panels = [
        timeseries(
            "End-to-end latency",
            "From the end of the source read to publish, p50/p95/p99 (histogram_quantile over "
            "0.1 ms…5 s buckets, at most 12 % apart where Pi 5 CPU runs fall).",
            targets(*((quantile(q, e2e, "le"), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99))),
            "s",
        ),
        timeseries(
            "Where the time goes (mean per stage)",
            "Mean time per frame in each stage after the source read, stacked: the top line "
            "is the processing time of a frame; the gap up to the end-to-end mean is time "
            "queued between stages. The read (stage capture) is left out: for a camera it is "
            "mostly the wait for its next frame, and end-to-end starts after it.",
            targets(
                (mean_rate(stage, f'{SEL},stage!="capture"', "sum by (stage)"), "{{stage}}"),
                (mean_rate(e2e, SEL, "sum"), "end-to-end (mean)"),
            ),
            "s",
            custom={"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40},
            overrides=[unstacked_line("end-to-end (mean)")],
        ),
    ]
    for q in (0.5, 0.95, 0.99):
        panels.append(
            timeseries(
                f"Stage latency p{round(q * 100)}",
                f"{round(q * 100)}th percentile of the time a frame spends in each stage.",
                [target(quantile(q, stage, "stage, le"), "{{stage}}")],
                "s",
            )
        )
    return with_widths(panels, (12, 12, 8, 8, 8))


def detections() -> list[Panel]:
    conf = "edged_detection_confidence"
    return [
        {
            "type": "heatmap",
            "title": "Detection confidence",
            "description": "How many detections fell in each 0.05-wide confidence bucket per "
            "interval ($label). A model that got worse shifts mass towards the threshold.",
            "datasource": DATASOURCE,
            "targets": [
                target(
                    f'sum by (le) (increase({conf}_bucket{{{SEL}, label=~"$label"}}'
                    "[$__rate_interval]))",
                    "{{le}}",
                    format="heatmap",
                )
            ],
            "fieldConfig": {
                "defaults": {"custom": {"scaleDistribution": {"type": "linear"}}},
                "overrides": [],
            },
            "options": {
                "calculate": False,
                "yAxis": {"axisPlacement": "left", "decimals": 2, "unit": "percentunit"},
                "rowsFrame": {"layout": "le"},
                "color": {
                    "mode": "scheme",
                    "scheme": "Oranges",
                    "fill": "dark",
                    "scale": "exponential",
                    "exponent": 0.5,
                    "steps": 64,
                },
                "cellGap": 1,
                "tooltip": {"mode": "single", "yHistogram": True},
                "legend": {"show": True},
            },
        },
        timeseries(
            "Detections per second by label",
            "Published detections per label (labels from the model's class list).",
            [
                target(
                    f'sum by (label) (rate(edged_detections_total{{{SEL}, label=~"$label"}}'
                    "[$__rate_interval])) > 0",
                    "{{label}}",
                )
            ],
            "none",
        ),
        timeseries(
            "Median confidence by label",
            "p50 of detection confidence per label, for labels seen in the interval.",
            [
                target(
                    f"histogram_quantile(0.5, sum by (label, le) (rate({conf}_bucket{{{SEL}, "
                    'label=~"$label"}[$__rate_interval]))) >= 0',
                    "{{label}}",
                )
            ],
            "percentunit",
        ),
    ]


def counts() -> list[Panel]:
    """Tracking (tracking.enabled): objects now, in each zone, across each line; tracker cost."""
    crossings = (
        f"sum by (line, direction) (increase(edged_line_crossings_total{{{SEL}, "
        'label=~"$label"}[$__range]))'
    )
    return with_widths([
        timeseries(
            "Tracks by label",
            "Confirmed tracks alive (objects followed across frames), per label.",
            [target(f'sum by (label) (edged_tracks_active{{{SEL}, label=~"$label"}})',
                    "{{label}}")],
            "none",
        ),
        timeseries(
            "Objects in zones",
            "Tracks whose anchor point is inside each configured zone, per label.",
            [target(f'sum by (zone, label) (edged_zone_objects{{{SEL}, label=~"$label"}})',
                    "{{zone}} {{label}}")],
            "none",
        ),
        stat(
            "Line crossings",
            "Tracks that crossed each configured line in the dashboard's time range, by "
            "direction (as seen walking from the line's first point to its second).",
            [target(crossings, "{{line}} {{direction}}")],
            defaults={"decimals": 0},
            text_mode="value_and_name",
        ),
        timeseries(
            "Tracker time p99",
            "99th percentile of the tracker's time per frame (association, zones, lines).",
            [target(quantile(0.99, "edged_tracker_seconds", "le"), "p99")],
            "s",
        ),
    ], (6, 6, 6, 6))  # fmt: skip


def model_and_reliability() -> list[Panel]:
    panels = [
        {
            "type": "state-timeline",
            "title": "Active variant",
            "description": "Which variant served frames when: hot swaps show as a change.",
            "datasource": DATASOURCE,
            "targets": [
                target(f"max by (variant) (edged_model_info{{{SEL}}}) == 1", "{{variant}}")
            ],
            "fieldConfig": {
                "defaults": {
                    "color": {"mode": "palette-classic"},
                    "mappings": [
                        {"type": "value", "options": {"1": {"text": "active", "index": 0}}}
                    ],
                },
                "overrides": [],
            },
            "options": {
                "showValue": "never",
                "mergeValues": True,
                "rowHeight": 0.8,
                "legend": {"showLegend": False},
            },
        },
        range_count(
            "Model swaps",
            "Swaps in the selected time range, by result (ok, refused).",
            "edged_model_swaps_total",
            by="result",
        ),
        stat(
            "Swap duration p95",
            "Time to load and warm up a new variant and switch to it (swaps in range).",
            [
                target(
                    "histogram_quantile(0.95, sum by (le) (increase("
                    f"edged_model_swap_duration_seconds_bucket{{{SEL}}}[$__range])))"
                )
            ],
            "s",
        ),
        range_count(
            "Stage restarts",
            "Stage processes restarted after dying, in the selected time range.",
            "edged_stage_restarts_total",
            by="stage",
            alert="red",
        ),
        range_count(
            "Model reloads",
            "The active model loaded again after its backend failed (a Hailo pipeline shut "
            "down, a device timeout), in the selected range, by result.",
            "edged_model_reloads_total",
            by="result",
            alert="orange",
        ),
        range_count(
            "Source reconnects",
            "Times the source was reopened after an error or stall, in the selected range.",
            "edged_source_reconnects_total",
            alert="orange",
        ),
    ]
    return with_widths(panels, (6, 4, 3, 4, 4, 3))


def shadow() -> list[Panel]:
    agreement = "edged_shadow_agreement"
    rates = f'max by (camera, variant, measure) ({agreement}{{{SEL},measure!="confidence_shift"}})'
    shift = f'max by (camera, variant) ({agreement}{{{SEL},measure="confidence_shift"}})'
    panels = [
        timeseries(
            "Agreement with the reference variant",
            "The shadow monitor (monitor.shadow): now and then a published frame runs through "
            "the reference variant (FP32) too, in a low-priority helper. Boxes matched at IoU "
            "≥ 0.5 and the same class, pooled over the last monitor.shadow.window checks: "
            "agreement (2·matched / all boxes), recall and precision of the live variant, "
            "their mean IoU. Below monitor.shadow.min_agreement edged logs a WARNING.",
            [target(rates, "{{camera}} {{variant}} {{measure}}")],
            "percentunit",
            defaults={"min": 0, "max": 1},
        ),
        timeseries(
            "Confidence shift",
            "Mean confidence of the live variant's matched boxes minus the reference's: a "
            "quantized model that grows timid (or bold) shows here before boxes are lost.",
            [target(shift, "{{camera}} {{variant}}")],
            "none",
        ),
        range_count(
            "Shadow checks",
            "Frames offered to the shadow check in the selected range, by result: ok, "
            "below_floor (that frame under the floor), skipped (over the CPU budget), dropped "
            "(helper busy or down: the live path never waits), error.",
            "edged_shadow_checks_total",
            by="result",
        ),
        stat(
            "Shadow CPU cost",
            "The helper's CPU time as a share of the live inference time since it started "
            "(kept under monitor.shadow.max_cost_percent).",
            [target(f"max(edged_shadow_cost_ratio{{{SEL}}})")],
            "percentunit",
            defaults={"decimals": 1},
        ),
    ]
    return with_widths(panels, (10, 6, 5, 3))


def resources() -> list[Panel]:
    return [
        timeseries(
            "Resident memory per process",
            "RSS of the supervisor and each stage process (shared-memory rings count once "
            "per process that touched them).",
            [
                target(
                    f"max by (process) (edged_process_resident_memory_bytes{{{SEL}}})",
                    "{{process}}",
                )
            ],
            "bytes",
        ),
        timeseries(
            "CPU per process",
            "CPU time per second of each process (100% = one core; a Pi 5 has four).",
            [
                target(
                    f"sum by (process) (rate(edged_process_cpu_seconds_total{{{SEL}}}"
                    "[$__rate_interval]))",
                    "{{process}}",
                )
            ],
            "percentunit",
        ),
        timeseries(
            "SoC temperature",
            "Each thermal zone. The Pi 5 firmware throttles from 80 °C (soft limit) and hard "
            "at 85 °C. No data off a Pi.",
            [target(f"max by (zone) (edged_soc_temperature_celsius{{{SEL}}})", "{{zone}}")],
            "celsius",
            defaults={"thresholds": thresholds((None, "green"), (80, "red"))},
            custom={"thresholdsStyle": {"mode": "dashed"}},
        ),
    ]


# -- layout and dashboard ------------------------------------------------------------------------

ROWS: tuple[tuple[str, Any, int, int], ...] = (
    # title, panels, panel width, panel height
    ("Overview", overview, 0, 4),  # width 0: spread evenly
    ("Throughput", throughput, 12, 8),
    ("Latency", latency, 12, 9),
    ("Detections", detections, 8, 9),
    ("Counts: tracks, zones, lines", counts, 6, 8),
    ("Model, restarts and reconnects", model_and_reliability, 0, 6),
    ("Model agreement (shadow monitor)", shadow, 0, 7),
    ("Resources", resources, 8, 8),
)


def layout() -> list[Panel]:
    """Rows of panels with unique ids and non-overlapping grid positions (24 columns)."""
    panels: list[Panel] = []
    y = 0
    next_id = 1
    for title, make, width, height in ROWS:
        panels.append(
            {
                "type": "row",
                "title": title,
                "id": next_id,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        row = make()
        x = 0
        for panel in row:
            w = panel.pop("width", None) or width or 24 // len(row)
            if x + w > 24:
                x, y = 0, y + height
            panel["id"] = next_id
            panel["gridPos"] = {"x": x, "y": y, "w": w, "h": height}
            next_id += 1
            x += w
            panels.append(panel)
        y += height
    return panels


def variable(name: str, label: str, query: str, multi: bool = True) -> dict[str, Any]:
    """A query variable; ``multi`` offers "All" and several values, otherwise exactly one."""
    choice: dict[str, Any] = (
        {"includeAll": True, "allValue": ".*", "multi": True,
         "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}
        if multi
        else {"includeAll": False, "multi": False, "current": {}}  # Grafana picks the first
    )  # fmt: skip
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,  # on time range change: new instances and labels appear by themselves
        **choice,
        "sort": 1,
        "hide": 0,
    }


def dashboard() -> dict[str, Any]:
    return {
        "uid": "edged",
        "title": "edged",
        "description": "edged on a Raspberry Pi: frame rate, per-stage and end-to-end latency, "
        "detections and confidence, the active model variant, restarts and Pi health.",
        "tags": ["edged", "raspberry-pi", "inference"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                {
                    "type": "datasource",
                    "name": "datasource",
                    "label": "Prometheus",
                    "query": "prometheus",
                    "current": {"text": "Prometheus (edged)", "value": "edged-prometheus"},
                    "regex": "",
                    "refresh": 1,
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                },
                # One edged at a time: the panels sum over the selected instances, so "All"
                # would merge several Pis' FPS and latency into one line.
                variable(
                    "instance", "edged", "label_values(edged_build_info, instance)", multi=False
                ),
                variable(
                    "camera",
                    "Camera",
                    'label_values(edged_source_connected{instance=~"$instance"}, camera)',
                ),
                variable(
                    "label",
                    "Label",
                    'label_values(edged_detections_total{instance=~"$instance"}, label)',
                ),
            ]
        },
        "panels": layout(),
    }


# -- reading a dashboard back (the tests use these) -----------------------------------------------


class Query(NamedTuple):
    panel: str
    ref: str
    expr: str


def iter_queries(dash: dict[str, Any]) -> Iterator[Query]:
    """Every PromQL expression of a dashboard: panel targets (rows included) and variables."""
    panels = list(dash.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))  # collapsed rows nest their panels
        for tgt in panel.get("targets", []):
            yield Query(panel.get("title", ""), tgt.get("refId", ""), tgt.get("expr", ""))


def variable_queries(dash: dict[str, Any]) -> Iterator[Query]:
    """The ``label_values(...)`` queries of the dashboard's query variables."""
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            yield Query(f"${var['name']}", "", query["query"] if isinstance(query, dict) else query)


# Grafana's built-in interval variables, as Grafana would expand them for a 1 s scrape interval
# over a short time range; tests evaluate the expressions with these.
BUILTINS = {"__rate_interval": "15s", "__interval": "5s", "__range": "5m"}


def substitute(expr: str, dash: dict[str, Any], values: dict[str, str] | None = None) -> str:
    """``expr`` with $var / ${var} / [[var]] replaced the way Grafana would with "All" selected.

    Query variables expand to their ``allValue`` (".*"); built-ins to :data:`BUILTINS`;
    ``values`` overrides either. An unknown variable raises KeyError: a typo in a dashboard
    would otherwise only surface as an empty panel.
    """
    known = dict(BUILTINS)
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            known[var["name"]] = var.get("allValue") or ".*"
    known.update(values or {})

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return known[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", replace, expr)


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the JSON is stale")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
