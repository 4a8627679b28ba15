"""Every Prometheus metric edged exports, defined once, in one registry owned by the supervisor.

Why one place instead of prometheus_client's multiprocess mode: every frame already carries its
monotonic timestamps from capture to publish, so the supervisor records all latency histograms
from one record per published frame. Histogram counts then equal the frames published exactly,
stage restarts never reset or orphan counters, and no mmap files pile up per PID. Stages report
their own counters (ok/dropped/error, queue depth) as deltas over the supervisor channel.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import psutil
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edged import __version__
from edged.pipeline.stage_names import STAGE_ORDER
from edged.tracking.result import TrackingSummary

STAGES: tuple[str, ...] = STAGE_ORDER
OUTCOMES: tuple[str, ...] = ("ok", "dropped", "error")

# 0.1 ms .. 5 s: sub-millisecond stages (postprocess, hand-offs), a Hailo run (a few ms), and
# steps of at most ~12 % where Pi 5 CPU runs fall (INT8 ~100-200 ms, FP32 ~350-600 ms), so a
# quantile interpolated inside a bucket is off by a few ms there, not by tens.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.0002, 0.0004, 0.0007, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02,
    0.03, 0.04, 0.05, 0.075, 0.1, 0.11, 0.12, 0.134, 0.15, 0.165, 0.18, 0.2, 0.25, 0.3,
    0.35, 0.39, 0.43, 0.47, 0.52, 0.58, 0.64, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
)  # fmt: skip
CONFIDENCE_BUCKETS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 21))
SWAP_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
# The tracker's time per frame: tens of µs (a few objects) to a few ms (hundreds).
TRACKER_BUCKETS: tuple[float, ...] = (
    0.00002, 0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.05,
)  # fmt: skip


def _makers(registry: CollectorRegistry, *kinds: type) -> tuple[Callable[..., Any], ...]:
    """Metric constructors bound to ``registry``."""
    return tuple(partial(kind, registry=registry) for kind in kinds)


class Metrics:
    """The metric objects; the supervisor records into them, ``/metrics`` exposes ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # The text format exposes every counter/histogram child's ``_created`` timestamp as a
        # separate gauge series; with a histogram per COCO label that is hundreds of series a
        # Pi's Prometheus stores for nothing (counter resets are detected without them).
        disable_created_metrics()
        # Every metric goes into this registry, never prometheus_client's global one.
        self.registry = registry or CollectorRegistry()
        self._label_series: set[str] = set()  # labels with detection series (see retire_labels)
        self._cameras: list[str] = []  # camera label values with series (see use_cameras)
        # Registered in this order, which is the exposition's order.
        self._add_daemon_metrics()
        self._add_frame_metrics()
        self._add_detection_metrics()
        self._add_model_metrics()
        self._add_source_metrics()
        self._add_publish_metrics()
        self._add_tracking_metrics()
        self._create_zero_series()

    def _add_daemon_metrics(self) -> None:
        """Build info and start time."""
        (gauge,) = _makers(self.registry, Gauge)
        self.build_info = gauge(
            "edged_build_info",
            "Always 1; labels name the edged and Python versions running.",
            ["version", "python"],
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.start_time = gauge(
            "edged_start_time_seconds",
            "Unix time the daemon started (uptime = time() - this; a jump means a restart).",
        )
        self.start_time.set(time.time())

    def _add_frame_metrics(self) -> None:
        """Per-stage latency, frame outcomes and queue depths; end-to-end latency."""
        counter, gauge, histogram = _makers(self.registry, Counter, Gauge, Histogram)
        self.stage_latency = histogram(
            "edged_stage_latency_seconds",
            "Time a frame spent being processed in each pipeline stage, by camera.",
            ["stage", "camera"],
            buckets=LATENCY_BUCKETS,
        )
        self.end_to_end_latency = histogram(
            "edged_end_to_end_latency_seconds",
            "Time from the end of a frame's source read until its detections were published "
            '(the read itself is edged_stage_latency_seconds{stage="capture"}), by camera.',
            ["camera"],
            buckets=LATENCY_BUCKETS,
        )
        self.frames = counter(
            "edged_frames",
            "Frames handled by each stage, by outcome (ok, dropped, error) and camera.",
            ["stage", "outcome", "camera"],
        )
        self.queue_depth = gauge(
            "edged_queue_depth",
            "Frames waiting in front of each stage (at its last poll; always 0 for a stage fed by "
            "a direct call from the stage before it in the same process).",
            ["stage"],
        )

    def _add_detection_metrics(self) -> None:
        """Detections and their confidence, by label."""
        counter, histogram = _makers(self.registry, Counter, Histogram)
        self.detections = counter(
            "edged_detections", "Detections published, by label and camera.", ["label", "camera"]
        )
        self.confidence = histogram(
            "edged_detection_confidence",
            "Confidence of published detections, by label and camera.",
            ["label", "camera"],
            buckets=CONFIDENCE_BUCKETS,
        )

    def _add_model_metrics(self) -> None:
        """The active model, swaps and reloads."""
        counter, gauge, histogram = _makers(self.registry, Counter, Gauge, Histogram)
        self.model_info = gauge(
            "edged_model_info",
            "The active model: 1 for the variant serving frames.",
            ["name", "variant", "backend", "precision"],
        )
        self.model_swaps = counter(
            "edged_model_swaps", "Model swaps by result (ok, refused).", ["result"]
        )
        self.model_swap_duration = histogram(
            "edged_model_swap_duration_seconds",
            "Time to load and warm up a new variant and switch to it.",
            buckets=SWAP_BUCKETS,
        )
        self.model_reloads = counter(
            "edged_model_reloads",
            "The active model loaded again after its backend failed (e.g. the Hailo pipeline "
            "shut down), by result (ok, failed).",
            ["result"],
        )

    def _add_source_metrics(self) -> None:
        """The source's connection and rate; stage restarts."""
        counter, gauge = _makers(self.registry, Counter, Gauge)
        self.source_reconnects = counter(
            "edged_source_reconnects",
            "Times a camera's source was reopened after an error or stall.",
            ["camera"],
        )
        self.source_connected = gauge(
            "edged_source_connected", "1 while the camera's source delivers frames.", ["camera"]
        )
        self.source_fps = gauge(
            "edged_source_fps", "Frame rate the camera's source reports.", ["camera"]
        )
        self.stage_restarts = counter(
            "edged_stage_restarts", "Stage processes restarted after dying.", ["stage"]
        )

    def _add_publish_metrics(self) -> None:
        """Subscribers and bytes published."""
        counter, gauge = _makers(self.registry, Counter, Gauge)
        self.subscribers = gauge(
            "edged_subscribers",
            "ZeroMQ subscriptions to this camera's detections (preview viewers not counted).",
        )
        self.published_bytes = counter(
            "edged_published_bytes", "Payload bytes published over ZeroMQ."
        )

    def _add_tracking_metrics(self) -> None:
        """Tracks, zone occupancy, line crossings, tracker time."""
        counter, gauge, histogram = _makers(self.registry, Counter, Gauge, Histogram)
        # Tracking (tracking.enabled): label values come from the model's classes and the
        # configured zone/line names, so the series stay bounded.
        self.tracks_active = gauge(
            "edged_tracks_active", "Confirmed tracks alive (seen within track_buffer_s).", ["label"]
        )
        self.zone_objects = gauge(
            "edged_zone_objects", "Confirmed tracks inside each zone.", ["zone", "label"]
        )
        self.line_crossings = counter(
            "edged_line_crossings",
            "Tracks that crossed each line, by direction (as seen walking from its A to its B).",
            ["line", "label", "direction"],
        )
        self.tracker_seconds = histogram(
            "edged_tracker_seconds",
            "Time the tracker (association, zones, lines) took per frame.",
            buckets=TRACKER_BUCKETS,
        )

    def _create_zero_series(self) -> None:
        """Series that exist before anything happens, so dashboards show zeros, not gaps."""
        for stage in STAGES:
            self.queue_depth.labels(stage)
            self.stage_restarts.labels(stage)
        for result in ("ok", "refused"):
            self.model_swaps.labels(result)
        for result in ("ok", "failed"):
            self.model_reloads.labels(result)
        self.use_cameras([""])  # none named yet (the daemon names its cameras)

    # The families with a camera label: its values are the configured camera ids (bounded by
    # the config), "" where there is no camera (the Frigate detector).
    def _camera_families(self) -> tuple[Any, ...]:
        return (self.stage_latency, self.end_to_end_latency, self.frames, self.detections,
                self.confidence, self.source_reconnects, self.source_connected,
                self.source_fps)  # fmt: skip

    def use_cameras(self, cameras: Iterable[str]) -> None:
        """The cameras now configured: zero series for the new ones, none left of the others
        (a reload that removed a camera removes its series)."""
        cameras = list(cameras)
        for camera in set(self._cameras) - set(cameras):
            for family in self._camera_families():
                # prometheus_client keeps a family's children by label values; the camera is
                # always the last label.
                for values in [v for v in list(family._metrics) if v[-1] == camera]:
                    family.remove(*values)
        for camera in [c for c in cameras if c not in self._cameras]:
            self.source_connected.labels(camera).set(0)  # until its source delivers
            for stage in STAGES:
                self.stage_latency.labels(stage, camera)
                for outcome in OUTCOMES:
                    self.frames.labels(stage, outcome, camera)
            self.end_to_end_latency.labels(camera)
            self.source_reconnects.labels(camera)
            for label in self._label_series:
                self.detections.labels(label, camera)
                self.confidence.labels(label, camera)
        self._cameras = cameras

    def set_active_model(self, name: str, variant: str, backend: str, precision: str) -> None:
        """Exactly one ``edged_model_info`` series is 1: the one serving frames."""
        self.model_info.clear()
        self.model_info.labels(name, variant, backend, precision).set(1)

    def prepare_labels(self, labels: Iterable[str]) -> None:
        """Pre-create per-label series (of every camera) so dashboards show zeros, not gaps."""
        for label in labels:
            self._label_series.add(label)
            for camera in self._cameras:
                self.detections.labels(label, camera)
                self.confidence.labels(label, camera)

    def count_detection(self, label: str, confidence: float, camera: str = "") -> None:
        self._label_series.add(label)
        self.detections.labels(label, camera).inc()
        self.confidence.labels(label, camera).observe(confidence)

    def retire_labels(self, keep: Iterable[str]) -> None:
        """Remove the per-label series of every label not in ``keep``.

        A label costs ~23 series (a counter and a histogram); without this, each model ever
        swapped in would leave its whole label set behind until a restart (a 365-class model:
        ~8,000 series a Pi's Prometheus keeps scraping).
        """
        for label in self._label_series - set(keep):
            for family in (self.detections, self.confidence):
                for values in [v for v in list(family._metrics) if v[0] == label]:
                    family.remove(*values)
            self._label_series.discard(label)

    def prepare_tracking(self, zones: Iterable[Any], lines: Iterable[Any]) -> None:
        """Series at 0 for the zones and lines with a label filter (their labels are known
        before any object shows up), so a dashboard shows zeros instead of no data."""
        for zone in zones:
            for label in zone.labels or ():
                self.zone_objects.labels(zone.name, label).set(0)
        for line in lines:
            for label in line.labels or ():
                for direction in ("left_to_right", "right_to_left"):
                    self.line_crossings.labels(line.name, label, direction)

    def record_tracking(self, summary: TrackingSummary) -> None:
        """One frame's tracking (the tracks alive, zone occupancy, crossings, tracker time)."""
        _set_all(self.tracks_active, {(label,): n for label, n in summary.active})
        _set_all(self.zone_objects, {(z, label): n for z, label, n in summary.zones})
        for line, label, direction in summary.crossings:
            self.line_crossings.labels(line, label, direction).inc()
        if summary.seconds is not None:
            self.tracker_seconds.observe(summary.seconds)


def _set_all(gauge: Gauge, values: dict[tuple[str, ...], int]) -> None:
    """Set ``gauge``'s series to ``values``; series not in it drop to 0 (not removed: a
    dashboard shows 0, not a gap, once a zone empties)."""
    for labels in {tuple(s.labels.values()) for m in gauge.collect() for s in m.samples}:
        if labels not in values:
            gauge.labels(*labels).set(0)
    for labels, n in values.items():
        gauge.labels(*labels).set(n)


class ProcessCollector(Collector):
    """Resident memory and CPU time of each edged process, read with psutil at scrape time."""

    def __init__(self, processes: Callable[[], Sequence[tuple[str, int]]]) -> None:
        self._processes = processes

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        rss = GaugeMetricFamily(
            "edged_process_resident_memory_bytes",
            "Resident memory of each edged process.",
            labels=["process"],
        )
        cpu = CounterMetricFamily(
            "edged_process_cpu_seconds",
            "User plus system CPU time of each edged process.",
            labels=["process"],
        )
        for name, pid in self._processes():
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    mem = proc.memory_info().rss
                    times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            rss.add_metric([name], mem)
            cpu.add_metric([name], times.user + times.system)
        yield rss
        yield cpu


class HailoCollector(Collector):
    """Hailo chip temperature, read at scrape time while a Hailo variant is serving."""

    def __init__(self, read_temperature: Callable[[], float | None]) -> None:
        self._read = read_temperature

    def collect(self) -> Iterable[GaugeMetricFamily]:
        value = self._read()
        if value is None:
            return
        family = GaugeMetricFamily(
            "edged_hailo_temperature_celsius", "Hailo NPU chip temperature (hotter sensor)."
        )
        family.add_metric([], value)
        yield family
