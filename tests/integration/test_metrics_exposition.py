"""The running daemon's /metrics, scraped over real HTTP: histograms count the frames published.

One lossless run over the 459-frame test video (about 25 s on two cores) is shared by the tests
in this module; the daemon idles after the end of the file (no --exit-at-end), so the final
counts and the "source ended" readiness can be read at leisure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from edged.metrics import CONFIDENCE_BUCKETS, LATENCY_BUCKETS, OUTCOMES, STAGES
from edged.pipeline.layout import process_groups, process_name
from tests.daemon import VIDEO, VIDEO_FRAMES, Daemon, Scrape, poll_until, require

pytestmark = pytest.mark.integration

READY_MAX_AGE_S = 2.0


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Scrape, list]]:
    """(daemon, final scrape, messages received) once every frame of the video went out."""
    video = require(VIDEO)
    daemon = Daemon(
        tmp_path_factory.mktemp("lossless"),
        "--source", str(video), "--mode", "lossless", "--wait-subscribers", "1",
        config={"http": {"ready_max_age_s": READY_MAX_AGE_S}},
    )  # fmt: skip
    with daemon:
        # Held until this subscriber has joined: a subscription that reached the publisher
        # after the first frame (ZeroMQ's slow joiner) would lose it by chance.
        sub = daemon.subscriber()
        daemon.wait_ready(timeout=120)
        messages: list = []

        def all_out() -> Scrape | None:
            messages.extend(daemon.drain(sub))
            scrape = daemon.metrics()
            done = scrape.value("edged_end_to_end_latency_seconds_count") >= VIDEO_FRAMES and (
                scrape.value("edged_frames_total", stage="publish", outcome="ok") >= VIDEO_FRAMES
            )
            return scrape if done else None

        # The deadlines only bound a hang (~25 s of work on two idle cores).
        poll_until(all_out, 240, lambda: daemon._with_log("not every frame was published"), 0.25)
        # Stage counters arrive every stats_interval_s; wait for the slowest, then for quiet.
        scrape = daemon.wait_metric(
            "edged_frames_total", lambda v: v >= VIDEO_FRAMES * len(STAGES), 60, outcome="ok"
        )
        messages.extend(daemon.drain(sub))
        yield daemon, scrape, messages
        if daemon.running:  # test_sigterm_when_idle_after_the_end stops it when it runs
            assert daemon.stop() == 0


def test_histograms_count_exactly_the_frames_published(finished) -> None:
    daemon, scrape, messages = finished
    published = scrape.value("edged_frames_total", stage="publish", outcome="ok")
    assert published == VIDEO_FRAMES
    assert scrape.value("edged_end_to_end_latency_seconds_count") == VIDEO_FRAMES
    for stage in STAGES:
        assert scrape.value("edged_stage_latency_seconds_count", stage=stage) == VIDEO_FRAMES
        assert scrape.value("edged_frames_total", stage=stage, outcome="ok") == VIDEO_FRAMES
        # Lossless: nothing may be skipped or fail anywhere.
        for outcome in OUTCOMES[1:]:
            assert scrape.value("edged_frames_total", stage=stage, outcome=outcome) == 0
    # What subscribers saw agrees with the metrics: every frame once, in order.
    assert [m["seq"] for m in messages] == list(range(VIDEO_FRAMES))
    detections = sum(len(m["detections"]) for m in messages)
    assert scrape.total("edged_detections_total") == detections
    assert scrape.total("edged_detection_confidence_count") == detections
    assert detections > 0
    assert daemon.metrics().value("edged_end_to_end_latency_seconds_count") == VIDEO_FRAMES


def test_histograms_are_well_formed(finished) -> None:
    _daemon, scrape, _messages = finished
    for stage in STAGES:
        _check_histogram(scrape, "edged_stage_latency_seconds", LATENCY_BUCKETS, stage=stage)
    _check_histogram(scrape, "edged_end_to_end_latency_seconds", LATENCY_BUCKETS)
    for label in ("person", "car", "bicycle"):
        _check_histogram(scrape, "edged_detection_confidence", CONFIDENCE_BUCKETS, label=label)
    # End to end spans every stage, so it is at least their sum (same monotonic clock).
    stage_sum = sum(scrape.value("edged_stage_latency_seconds_sum", stage=s) for s in STAGES)
    assert scrape.value("edged_end_to_end_latency_seconds_sum") >= stage_sum * 0.999


def _check_histogram(scrape: Scrape, name: str, bounds: tuple[float, ...], **labels: str) -> None:
    buckets = scrape.samples(f"{name}_bucket", **labels)
    by_le = {float(s.labels["le"]): s.value for s in buckets}
    assert sorted(by_le) == [*bounds, float("inf")], f"{name}{labels} buckets"
    counts = [by_le[le] for le in sorted(by_le)]
    assert counts == sorted(counts), f"{name}{labels} buckets not cumulative: {counts}"
    assert counts[-1] == scrape.value(f"{name}_count", **labels)


def test_every_family_is_exposed_with_bounded_labels(finished) -> None:
    _daemon, scrape, _messages = finished
    names = scrape.names()
    expected = {
        "edged_build_info", "edged_start_time_seconds", "edged_queue_depth",
        "edged_model_info", "edged_model_swaps_total", "edged_model_swap_duration_seconds_count",
        "edged_source_reconnects_total", "edged_source_connected", "edged_source_fps",
        "edged_stage_restarts_total", "edged_published_bytes_total",
        "edged_process_resident_memory_bytes", "edged_process_cpu_seconds_total",
        "edged_subscribers",
    }  # fmt: skip
    assert expected <= names, f"missing: {sorted(expected - names)}"
    assert scrape.value("edged_subscribers") == 1  # this test's own subscriber
    assert not any(n.endswith("_created") for n in names), "per-child _created series"
    model = scrape.samples("edged_model_info")
    assert [(s.labels["name"], s.labels["backend"], s.value) for s in model] == [
        ("yolov5n", "onnxruntime", 1.0)
    ]
    processes = {s.labels["process"] for s in scrape.samples("edged_process_resident_memory_bytes")}
    # The default layout: capture+preprocess | infer | postprocess+publish.
    assert processes == {"supervisor", *map(process_name, process_groups("fused"))}
    # Labels come from the model's class list only (80 COCO names), never from free text.
    labels = {s.labels["label"] for s in scrape.samples("edged_detections_total")}
    assert len(labels) <= 81 and {"person", "car", "bicycle"} <= labels
    assert len(scrape.text.splitlines()) < 5000, "exposition grew unexpectedly large"


def test_readyz_turns_503_when_the_source_ends(finished) -> None:
    daemon, _scrape, _messages = finished
    # Bounds a hang only; a 503 for the last frame's age may come before capture's end event.
    daemon.wait_status("/readyz", 503, timeout=60, reason="source ended")
    status, body = daemon.get("/readyz")
    assert status == 503 and json.loads(body)["ok"] is False
    # Still alive, just idle: liveness stays green, so systemd/k8s would not restart it.
    assert daemon.probe("/healthz")[0] == 200
    assert daemon.metrics().value("edged_source_connected") == 0


def test_sigterm_when_idle_after_the_end_exits_promptly(finished) -> None:
    """Runs last in this module: stops the shared daemon. Nothing is in flight, so no wait:
    the drain ends at once instead of running into its timeout, which the supervisor would log
    ("drain did not finish"). Not timed: how fast the processes exit is the machine's business
    (the stop's own bound only catches a hang)."""
    daemon, _scrape, _messages = finished
    assert daemon.stop(timeout=60) == 0
    assert "drain did not finish" not in daemon.log_text()
