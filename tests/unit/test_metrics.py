"""edged.metrics: names, buckets, pre-created series, bounded labels, and recording from the
per-frame records the supervisor receives (edged.pipeline.telemetry)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys

import psutil
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edged import __version__
from edged.metrics import (
    CONFIDENCE_BUCKETS,
    LATENCY_BUCKETS,
    OUTCOMES,
    STAGES,
    Metrics,
    ProcessCollector,
)
from edged.pipeline.messages import (
    STAGE_ORDER,
    InferenceReady,
    ModelDescriptor,
    PublishedFrame,
    SourceLost,
    Stats,
)
from edged.pipeline.telemetry import Telemetry
from tests.stage_events import connected, published_frame, stats


def samples(metrics: Metrics) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} after a text exposition round trip. The
    ``camera=""`` of a pipeline without named cameras is left out (test_camera_label_*)."""
    text = generate_latest(metrics.registry).decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            items = tuple(sorted(i for i in s.labels.items() if i != ("camera", "")))
            out.setdefault(s.name, {})[items] = s.value
    return out


def model(labels: tuple[str, ...] = ("person", "car"), variant: str = "fp32") -> ModelDescriptor:
    return ModelDescriptor(f"yolov5n/{variant}/1", "yolov5n", variant, "onnxruntime", variant,
                           640, 640, "NCHW", "float32", "yolov5", labels)  # fmt: skip


def record(seq: int, class_ids: list[int], scores: list[float], t0: float = 100.0,
           model_key: str = "yolov5n/fp32/1") -> PublishedFrame:  # fmt: skip
    # Each stage takes 8 ms, back to back; end to end is 45 ms (all clear of bucket bounds).
    timings = tuple((stage, t0 + 0.008 * i, t0 + 0.008 * (i + 1)) for i, stage in enumerate(STAGES))
    return published_frame(seq, t0 + 0.045, model_key, tuple(class_ids), tuple(scores), timings,
                           captured=t0)  # fmt: skip


def published(*records: PublishedFrame) -> tuple[str, Stats]:
    return "publish", stats(*records)


def test_stage_names_are_the_pipeline_order() -> None:
    assert STAGES == STAGE_ORDER
    assert OUTCOMES == ("ok", "dropped", "error")


def test_latency_buckets_resolve_0_1ms_to_5s() -> None:
    assert LATENCY_BUCKETS[0] == 0.0001 and LATENCY_BUCKETS[-1] == 5.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))
    # No gap wider than 2× between neighbours: a quantile is never off by more than that.
    assert all(b / a <= 2.0 for a, b in itertools.pairwise(LATENCY_BUCKETS))
    # Where Pi 5 CPU runs fall (INT8 0.1-0.2 s, FP32 0.35-0.6 s), steps of at most 12 %.
    pi_range = [(a, b) for a, b in itertools.pairwise(LATENCY_BUCKETS)
                if 0.1 <= a < 0.2 or 0.35 <= a < 0.6]  # fmt: skip
    assert len(pi_range) >= 12 and all(b / a <= 1.12 for a, b in pi_range)


def test_confidence_buckets_are_005_wide() -> None:
    assert tuple(round(0.05 * i, 2) for i in range(1, 21)) == CONFIDENCE_BUCKETS


def test_series_exist_before_the_first_frame() -> None:
    """Dashboards show zeros, not gaps, and rate() works from the first scrape."""
    got = samples(Metrics())
    assert len(got["edged_frames_total"]) == len(STAGES) * len(OUTCOMES)
    assert set(got["edged_frames_total"].values()) == {0.0}
    for name in ("edged_stage_latency_seconds_count", "edged_queue_depth",
                 "edged_stage_restarts_total"):  # fmt: skip
        assert {dict(k)["stage"] for k in got[name]} == set(STAGES)
    assert {dict(k)["result"] for k in got["edged_model_swaps_total"]} == {"ok", "refused"}
    assert got["edged_end_to_end_latency_seconds_count"] == {(): 0.0}
    assert got["edged_source_reconnects_total"] == {(): 0.0}


def test_no_created_series() -> None:
    assert not [name for name in samples(Metrics()) if name.endswith("_created")]


def test_build_info_and_start_time() -> None:
    got = samples(Metrics())
    ((labels, value),) = got["edged_build_info"].items()
    assert dict(labels)["version"] == __version__ and value == 1.0
    import time

    assert abs(got["edged_start_time_seconds"][()] - time.time()) < 60


def test_exactly_one_active_model_series() -> None:
    metrics = Metrics()
    metrics.set_active_model("yolov5n", "fp32", "onnxruntime", "fp32")
    metrics.set_active_model("yolov5n", "static", "onnxruntime", "int8-static")
    got = samples(metrics)["edged_model_info"]
    assert got == {
        (("backend", "onnxruntime"), ("name", "yolov5n"), ("precision", "int8-static"),
         ("variant", "static")): 1.0,
    }  # fmt: skip


def test_records_fill_every_histogram_once_per_frame() -> None:
    metrics = Metrics()
    telemetry = Telemetry(metrics, clock=lambda: 200.0)
    telemetry.set_model(model())
    telemetry.handle(*published(record(0, [0, 1, 0], [0.9, 0.42, 0.31]), record(1, [], [])))
    got = samples(metrics)
    # Counted in the same flush as the histograms: the two never disagree.
    ok = {dict(k)["stage"]: v for k, v in got["edged_frames_total"].items()
          if dict(k)["outcome"] == "ok"}  # fmt: skip
    assert ok["publish"] == 2
    for stage in STAGES:
        assert got["edged_stage_latency_seconds_count"][(("stage", stage),)] == 2
        assert got["edged_stage_latency_seconds_sum"][(("stage", stage),)] == pytest.approx(0.016)
        assert got["edged_stage_latency_seconds_bucket"][(("le", "0.0075"), ("stage", stage))] == 0
        assert got["edged_stage_latency_seconds_bucket"][(("le", "0.01"), ("stage", stage))] == 2
    assert got["edged_end_to_end_latency_seconds_count"][()] == 2
    assert got["edged_end_to_end_latency_seconds_bucket"][(("le", "0.04"),)] == 0
    assert got["edged_end_to_end_latency_seconds_bucket"][(("le", "0.05"),)] == 2
    assert got["edged_detections_total"] == {(("label", "person"),): 2, (("label", "car"),): 1}
    person = {dict(k)["le"]: v for k, v in got["edged_detection_confidence_bucket"].items()
              if dict(k)["label"] == "person"}  # fmt: skip
    assert (person["0.3"], person["0.35"], person["0.9"], person["+Inf"]) == (0, 1, 2, 2)
    assert got["edged_published_bytes_total"][()] == 200


def test_unknown_class_ids_share_one_label() -> None:
    """A class id beyond the model's list never mints a new label value."""
    metrics = Metrics()
    telemetry = Telemetry(metrics)
    telemetry.set_model(model(labels=("person",)))
    telemetry.handle(*published(record(0, [5, 7, 0], [0.5, 0.6, 0.7])))
    got = samples(metrics)["edged_detections_total"]
    assert got == {(("label", "person"),): 1, (("label", "unknown"),): 2}


def test_stage_stats_become_frame_counters_and_queue_depth() -> None:
    metrics = Metrics()
    telemetry = Telemetry(metrics)
    telemetry.handle("infer", Stats({"ok": 5, "dropped": 2, "error": 0}, queue_depth=3))
    telemetry.handle("infer", Stats({"ok": 1, "dropped": 0, "error": 1}, queue_depth=0))
    got = samples(metrics)
    frames = {tuple(dict(k).values()): v for k, v in got["edged_frames_total"].items()}
    assert frames[("dropped", "infer")] == 2 and frames[("error", "infer")] == 1
    assert frames[("ok", "infer")] == 6 and frames[("ok", "capture")] == 0
    assert got["edged_queue_depth"][(("stage", "infer"),)] == 0


def test_reconnects_counted_from_source_events() -> None:
    metrics = Metrics()
    telemetry = Telemetry(metrics)
    telemetry.handle("capture", connected(fps=12.0))
    telemetry.handle("capture", SourceLost("x"))
    telemetry.handle("capture", connected(fps=12.0, reconnect=True))
    got = samples(metrics)
    assert got["edged_source_reconnects_total"][()] == 1
    assert got["edged_source_connected"][()] == 1
    assert got["edged_source_fps"][()] == 12.0


def test_swaps_by_result_and_duration() -> None:
    metrics = Metrics()
    telemetry = Telemetry(metrics)
    telemetry.record_swap(True, 1.5)
    telemetry.record_swap(False, None)
    got = samples(metrics)
    assert got["edged_model_swaps_total"] == {(("result", "ok"),): 1, (("result", "refused"),): 1}
    assert got["edged_model_swap_duration_seconds_count"][()] == 1


def test_process_collector_reports_live_processes_and_skips_dead_ones() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    metrics = Metrics()
    metrics.registry.register(ProcessCollector(lambda: [("supervisor", os.getpid()),
                                                        ("infer", dead.pid)]))  # fmt: skip
    got = samples(metrics)
    rss = got["edged_process_resident_memory_bytes"]
    assert list(rss) == [(("process", "supervisor"),)]
    assert rss[(("process", "supervisor"),)] == pytest.approx(
        psutil.Process().memory_info().rss, rel=0.5
    )
    assert got["edged_process_cpu_seconds_total"][(("process", "supervisor"),)] > 0


def test_two_metrics_instances_do_not_clash() -> None:
    """Each Metrics owns its registry: tests and an embedded supervisor never collide."""
    a, b = Metrics(), Metrics()
    a.frames.labels("capture", "ok", "").inc()
    assert samples(b)["edged_frames_total"][(("outcome", "ok"), ("stage", "capture"))] == 0


def test_a_restarted_inference_process_keeps_detections_labelled() -> None:
    """Its model comes back under a new key (generation 0 again, after swaps): the supervisor
    learns it from the stage's ready event, so detections do not turn "unknown"."""
    metrics = Metrics()
    telemetry = Telemetry(metrics)
    telemetry.set_model(model())
    restarted = dataclasses.replace(model(), key="yolov5n/fp32/0")
    telemetry.handle("infer", InferenceReady(restarted))
    frame = record(0, [0, 1], [0.9, 0.8], model_key=restarted.key)
    telemetry.handle(*published(frame))
    got = samples(metrics)["edged_detections_total"]
    assert got == {(("label", "person"),): 1, (("label", "car"),): 1}


def test_labels_are_kept_for_the_last_few_models_only() -> None:
    telemetry = Telemetry(Metrics())
    for generation in range(20):
        telemetry.set_model(dataclasses.replace(model(), key=f"yolov5n/fp32/{generation}"))
    assert list(telemetry._labels_for) == [f"yolov5n/fp32/{g}" for g in range(16, 20)]


def label_series(metrics: Metrics) -> set[str]:
    """Labels that have an edged_detections_total series."""
    return {dict(k)["label"] for k in samples(metrics).get("edged_detections_total", {})}


def test_swaps_retire_the_label_series_of_models_no_longer_in_use() -> None:
    """Series of the active model and of the one before it (frames in flight) stay; those of
    older models are removed, so a long run of swaps does not pile series up."""
    metrics = Metrics()
    telemetry = Telemetry(metrics)
    coco = model(("person", "car"))
    objects365 = dataclasses.replace(model(tuple(f"o{i}" for i in range(365))), key="big/1")
    telemetry.set_model(coco)
    telemetry.handle(*published(record(0, [0, 1], [0.9, 0.8])))
    telemetry.set_model(objects365)
    assert label_series(metrics) == {"person", "car"} | set(objects365.labels)

    telemetry.set_model(dataclasses.replace(coco, key="yolov5n/fp32/2"))  # swapped back
    assert label_series(metrics) == {"person", "car"} | set(objects365.labels)  # still in flight
    telemetry.set_model(dataclasses.replace(coco, key="yolov5n/static/3"))
    assert label_series(metrics) == {"person", "car"}
    # A frame of a retired model arriving late still counts; the next swap tidies it away.
    late = record(1, [0, 364], [0.9, 0.8], model_key=objects365.key)
    telemetry.handle(*published(late))
    assert label_series(metrics) == {"person", "car", "o0", "o364"}
    assert samples(metrics)["edged_detections_total"][(("label", "person"),)] == 1  # kept
    telemetry.set_model(dataclasses.replace(coco, key="yolov5n/fp32/4"))
    assert label_series(metrics) == {"person", "car"}


def test_camera_label_series_follow_the_configured_cameras() -> None:
    """Per-camera families carry the camera id; the series exist for the configured cameras
    only (bounded by the config), and a camera removed by a reload takes its series along."""
    metrics = Metrics()
    telemetry = Telemetry(metrics)
    telemetry.set_model(model())
    for camera in ("front", "yard"):
        telemetry.add_camera(camera)
    telemetry.handle("capture", connected(fps=12.0), camera="yard")
    frame = dataclasses.replace(record(0, [0], [0.9]), camera="yard")
    telemetry.handle("publish", Stats({"ok": 1}, 0, (frame,), {"yard": {"ok": 1}}))
    counts = {"front": {"ok": 1}, "yard": {"ok": 2, "dropped": 3}}
    telemetry.handle("infer", Stats({"ok": 3, "dropped": 3}, 0, (), counts))
    text = generate_latest(metrics.registry).decode()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    cameras = {dict(k)["camera"] for (name, k) in got if "camera" in dict(k)}
    assert cameras == {"front", "yard"}  # no camera="" left once cameras are named
    assert got[("edged_frames_total", (("camera", "yard"), ("outcome", "dropped"),
                                       ("stage", "infer")))] == 3  # fmt: skip
    assert got[("edged_detections_total", (("camera", "yard"), ("label", "person")))] == 1
    assert got[("edged_detections_total", (("camera", "front"), ("label", "person")))] == 0
    assert got[("edged_source_connected", (("camera", "yard"),))] == 1
    assert got[("edged_end_to_end_latency_seconds_count", (("camera", "yard"),))] == 1
    telemetry.remove_camera("yard")
    telemetry.handle(*published(dataclasses.replace(record(1, [0], [0.9]), camera="yard")))
    text = generate_latest(metrics.registry).decode()
    assert 'camera="yard"' not in text and 'camera="front"' in text
