"""The shadow monitor's parts: its config, the CPU budget, the checker, the supervisor's judge
and metrics (pure), and the publish tap with a real shared-memory ring and real ZeroMQ sockets."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
import zmq
from prometheus_client import CollectorRegistry, generate_latest

from edged.config import ConfigError, parse_config
from edged.monitor.agreement import Agreement
from edged.monitor.budget import CostBudget
from edged.monitor.checker import Checker
from edged.monitor.config import ShadowConfig
from edged.monitor.judge import ShadowJudge
from edged.monitor.messages import ShadowReport, ShadowSample, sample_endpoint
from edged.monitor.metrics import ShadowMetrics
from edged.monitor.reference import FIELD, resolve_reference
from edged.monitor.tap import ShadowTap
from edged.pipeline.messages import INFER, Frame, ModelDescriptor
from edged.pipeline.ring import SharedRing
from edged.postprocess.decoders import Detections
from tests.rings import scratch_ring

W, H = 64, 48


# -- config ---------------------------------------------------------------------------------------


def _errors(section: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"monitor": {"shadow": section}})
    return dict(info.value.errors)


def test_defaults_are_off_and_as_documented():
    shadow = parse_config({}).monitor.shadow
    got = (shadow.enabled, shadow.every_s, shadow.variant, shadow.min_agreement,
           shadow.max_cost_percent, shadow.priority)  # fmt: skip
    assert got == (False, 10, "fp32", 0.8, 5, "idle")


def test_bad_monitor_settings_name_their_field():
    assert "monitor.shadow.every_s" in _errors({"every_s": 0})
    assert "monitor.shadow.min_agreement" in _errors({"min_agreement": 1.5})
    assert "monitor.shadow.max_cost_percent" in _errors({"max_cost_percent": 0})
    assert "monitor.shadow.priority" in _errors({"priority": "realtime"})
    typo = _errors({"evry_s": 5})["monitor.shadow.evry_s"]
    assert "did you mean 'every_s'" in typo


def test_a_reference_variant_the_model_lacks_is_a_config_error(tmp_path: Path):
    variant_dir = tmp_path  # files resolved, not loaded: empty ones do
    variants = {name: {"backend": "onnxruntime", "path": f"{name}.onnx"} for name in
                ("fp32", "static")}  # fmt: skip
    for name in variants:
        (tmp_path / f"{name}.onnx").touch()
    manifest = {"name": "yolov5n", "variants": variants}
    (tmp_path / "yolov5n.yaml").write_text(yaml.safe_dump(manifest))

    def config(variant: str = "fp16", **model: str):
        shadow = {"enabled": True, "variant": variant}
        return parse_config({"model": model, "monitor": {"shadow": shadow}})

    with pytest.raises(ConfigError) as info:
        resolve_reference(config(manifest="yolov5n", models_dir=str(variant_dir)), "edged.yaml")
    ((field, reason),) = info.value.errors
    assert field == FIELD == "monitor.shadow.variant"
    assert "no variant 'fp16'" in reason and "fp32" in reason  # says which ones exist
    with pytest.raises(ConfigError, match=r"monitor\.shadow\.variant: 'fp16': a reference "
                                          "variant needs a model manifest"):  # fmt: skip
        resolve_reference(config(path=str(variant_dir / "fp32.onnx")))
    reference = resolve_reference(config("static", manifest="yolov5n",
                                         models_dir=str(variant_dir)))  # fmt: skip
    assert reference is not None and reference.variant == "static"
    assert dict(reference.options)["intra_op_threads"] == 1  # one core at most
    assert resolve_reference(parse_config({})) is None  # off: nothing resolved


# -- the CPU budget and the checker ---------------------------------------------------------------


def test_budget_allows_a_check_only_within_its_share_of_inference_time():
    budget = CostBudget(0.05, expected_s=0.1)
    budget.earn(1.0)  # 50 ms of credit: not enough for a 100 ms check
    assert not budget.affords_check()
    budget.earn(1.0)
    assert budget.affords_check()
    budget.spend(0.1, check=True)
    assert not budget.affords_check()
    budget.earn(1000.0)  # a quiet hour is not banked beyond two checks' worth
    assert budget.credit == pytest.approx(2 * budget.expected_s)


def _dets(*boxes: tuple[float, float, float, float]) -> Detections:
    n = len(boxes)
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.full(n, 0.5, np.float32),
                      np.zeros(n, np.int64))  # fmt: skip


def _sample(seq: int, dets: Detections, infer_s: float = 1.0, variant: str = "static",
            dropped: int = 0) -> ShadowSample:  # fmt: skip
    return ShadowSample(seq, "cam0", W, H, variant, dets.boxes, dets.scores, dets.class_ids,
                        infer_s, dropped)  # fmt: skip


def test_checker_compares_and_keeps_its_cpu_within_the_budget():
    cpu = [0.0]  # the helper's CPU clock: a check costs 50 ms, receiving a sample 1 ms
    reference = _dets((0, 0, 10, 10), (20, 20, 30, 30))

    def detect(image: np.ndarray, camera: str) -> Detections:
        assert camera == "cam0"
        cpu[0] += 0.05
        return reference

    checker = Checker(detect, CostBudget(0.1, expected_s=0.05), cpu_clock=lambda: cpu[0])
    image = np.zeros((H, W, 3), np.uint8)
    outcomes = []
    for seq in range(40):
        cpu[0] += 0.001
        report = checker.handle(_sample(seq, _dets((0, 0, 10, 10)), infer_s=0.25), image)
        outcomes.append(report.outcome)
        if report.outcome == "checked":
            assert report.agreement == Agreement(2, 1, 1, 1.0, 0.0)
    assert "checked" in outcomes and "skipped" in outcomes
    # Every CPU second the helper used, against 10 % of the inference time it was told about
    # (plus the two checks' worth the budget may hold).
    assert report.cpu_s <= 0.1 * report.infer_s + 2 * 0.05 + 1e-9
    assert report.infer_s == pytest.approx(10.0)


# -- the supervisor's judge and metrics -----------------------------------------------------------


def _report(outcome: str = "checked", agreement: Agreement | None = None, variant: str = "static",
            dropped: int = 0, camera: str = "cam0") -> ShadowReport:  # fmt: skip
    return ShadowReport(outcome, 1, camera, variant, agreement, dropped, cpu_s=0.5, infer_s=10.0)


GOOD, BAD = Agreement(2, 2, 2, 2.0, 0.0), Agreement(2, 2, 0)


def test_judge_pools_a_full_window_before_it_alarms_and_says_when_it_recovers():
    judge = ShadowJudge(window=2, floor=0.8)
    first = judge.take(_report(agreement=BAD))
    assert first.counts == {"dropped": 0, "below_floor": 1}
    assert not first.fell_below  # one frame is not a trend: the window is not full
    fell = judge.take(_report(agreement=BAD))
    assert fell.fell_below and fell.pooled == Agreement(4, 4, 0) and judge.below == ["cam0"]
    assert not judge.take(_report(agreement=GOOD)).recovered  # pooled 0.5: still below
    back = judge.take(_report(agreement=GOOD))
    assert back.recovered and back.counts["ok"] == 1 and not judge.below
    # Each camera is judged on its own scene: another camera's checks start their own window.
    other = judge.take(_report(agreement=BAD, camera="cam1"))
    assert other.pooled == BAD and not other.fell_below and other.checks == 1
    assert back.cost_ratio == pytest.approx(0.05)


def test_judge_counts_drops_by_the_taps_running_count_and_starts_over_on_a_swap():
    judge = ShadowJudge(window=3, floor=0.8)
    assert judge.take(_report(agreement=GOOD, dropped=4)).counts["dropped"] == 4
    assert judge.take(_report("skipped", dropped=6)).counts == {"dropped": 2, "skipped": 1}
    assert judge.take(_report(agreement=GOOD, dropped=1)).counts["dropped"] == 1  # restarted tap
    swapped = judge.take(_report(agreement=BAD, variant="dynamic"))
    assert swapped.replaced == "static" and swapped.pooled == BAD  # static's checks gone


def test_metrics_expose_pooled_figures_by_variant_and_every_result_from_zero():
    registry = CollectorRegistry()
    metrics = ShadowMetrics(registry)
    judge = ShadowJudge(window=5, floor=0.8)
    metrics.record(judge.take(_report(agreement=Agreement(4, 2, 2, 1.8, -0.1), dropped=3)))
    text = generate_latest(registry).decode()
    series = 'edged_shadow_agreement{camera="cam0",measure="%s",variant="static"} %s'
    assert series % ("recall", "0.5") in text
    assert series % ("mean_iou", "0.9") in text
    assert series % ("confidence_shift", "-0.05") in text
    assert 'edged_shadow_checks_total{result="below_floor"} 1.0' in text
    assert 'edged_shadow_checks_total{result="dropped"} 3.0' in text
    assert 'edged_shadow_checks_total{result="error"} 0.0' in text
    assert "edged_shadow_cost_ratio 0.05" in text
    metrics.record(judge.take(_report(agreement=GOOD, variant="fp32")))
    text = generate_latest(registry).decode()
    assert 'variant="static"' not in text and 'measure="agreement",variant="fp32"} 1.0' in text
    metrics.record(judge.take(_report(agreement=Agreement(1, 1, 0), variant="dynamic")))
    text = generate_latest(registry).decode()  # no box matched in the window: no IoU to show
    assert 'measure="agreement",variant="dynamic"} 0.0' in text
    assert 'measure="mean_iou",variant="dynamic"' not in text


# -- the publish tap: never waits -----------------------------------------------------------------


@pytest.fixture
def ring() -> Iterator[SharedRing]:
    with scratch_ring("shtest", 2, W * H * 3) as r:
        yield r


MODEL = ModelDescriptor("m/static/0", "m", "static", "onnxruntime", "int8-static", 640, 640,
                        "NCHW", "float32", "yolov5", ("person",))  # fmt: skip


def _frame(ring: SharedRing, seq: int) -> Frame:
    ring.array(0, (H, W, 3), np.uint8)[...] = seq % 200
    ring.mark(0, seq)
    return Frame(seq=seq, wall_time=0.0, captured=0.0, width=W, height=H, frame_slot=0,
                 timings=((INFER, 1.0, 1.25),), model=MODEL,
                 detections=_dets((1, 2, 30, 40)))  # fmt: skip


def _tap(ring: SharedRing, runtime_dir: Path) -> ShadowTap:
    clock = itertools.count(0.0, 1.0)  # every offer is due (every_s 1)
    return ShadowTap(ShadowConfig(enabled=True, every_s=1.0), "cam0", {"frames": ring},
                     zmq.Context.instance(), runtime_dir, clock=lambda: next(clock))  # fmt: skip


def test_tap_with_no_helper_drops_every_sample_and_copies_nothing(ring, tmp_path: Path):
    tap = _tap(ring, tmp_path)
    for seq in range(100):
        tap.offer(_frame(ring, seq))  # returns at once: nothing queues for an absent helper
    assert (tap.sent, tap.dropped) == (0, 100)
    tap.close()


def test_tap_never_waits_for_a_helper_that_stopped_reading(ring, tmp_path: Path):
    # A bound PULL that never reads: what a helper that is busy or SIGSTOPped looks like.
    helper = zmq.Context.instance().socket(zmq.PULL)
    helper.setsockopt(zmq.RCVHWM, 1)
    helper.setsockopt(zmq.LINGER, 0)
    helper.bind(sample_endpoint(tmp_path))
    tap = _tap(ring, tmp_path)
    # The first sample once the connection is up (the tap drops until then).
    seq = itertools.count()
    while tap.sent == 0:
        tap.offer(_frame(ring, next(seq)))
    first_dropped = tap.dropped
    for _ in range(300):
        tap.offer(_frame(ring, next(seq)))
    # A few samples fit the queues (the high-water marks of 1 and what the socket buffers
    # take); every other one was dropped and counted, and each offer returned.
    assert tap.sent + tap.dropped == first_dropped + 301
    assert tap.sent <= 10 and tap.dropped >= first_dropped + 291
    header, pixels = helper.recv_multipart()
    sample = pickle.loads(header)
    got = (sample.seq, sample.width, sample.height, sample.live_variant, sample.dropped)
    assert got == (first_dropped, W, H, "static", first_dropped)
    # Every frame's inference time since the last sample went (none before: all of them).
    assert sample.infer_s == pytest.approx(0.25 * (first_dropped + 1))
    assert np.frombuffer(pixels, np.uint8).reshape(H, W, 3).max() == first_dropped % 200
    assert sample.boxes.tolist() == [[1, 2, 30, 40]]
    tap.close()
    helper.close(0)


def test_bench_shadow_reports_the_helpers_cpu_against_the_live_inference_time():
    from edged.tools.shadow_bench import _setting

    def run(infer_cpu: float, shadow_cpu: float) -> dict:
        return {"status": "ok", "frames": 100, "fps": 12.0, "window_s": 10.0,
                "e2e_ms": {"p50": 40.0, "p90": 45.0, "p99": 50.0, "mean": 41.0},
                "infer_ms": {"p50": 30.0, "mean": 30.0}, "load_before": [0.5, 0.5, 0.5],
                "cpu_percent_by_process": {"infer": infer_cpu, "shadow": shadow_cpu}}  # fmt: skip

    on = _setting([run(60.0, 1.5), run(60.0, 1.5)], monitor=True)
    # 2 runs × 100 frames × 30 ms of inference = 6 s; the helper used 2 × 1.5 % of 10 s = 0.3 s.
    assert (on["live_inference_s"], on["helper_cpu_s"]) == (6.0, 0.3)
    assert on["helper_share_of_inference_time"] == 0.05
    assert on["helper_share_of_infer_cpu"] == 0.025  # of the 12 s the inference process used
    assert on["e2e_ms"]["p50"] == 40.0 and on["frames"] == 200
    failed = _setting([{"status": "failed", "reason": "edged exited with 1"}], monitor=False)
    assert failed == {"monitor": False, "status": "failed", "reason": "edged exited with 1"}


# -- the supervisor's handle on the helper: a reload's cameras ------------------------------------


def test_a_reload_restarts_the_helper_for_new_thresholds_and_forgets_removed_cameras(
    tmp_path: Path,
):
    """A real helper process: a reload that only removes a camera keeps it (and the removed
    camera's STATUS note and agreement series go); a camera's new conf_threshold starts a new
    helper with it."""
    from edged.monitor.process import ShadowMonitor
    from tests.paths import YOLOV5N, require

    def config(*cameras: dict) -> object:
        shadow = {"enabled": True, "window": 2, "variant": "default"}
        return parse_config({"model": {"path": str(require(YOLOV5N))}, "cameras": list(cameras),
                             "monitor": {"shadow": shadow}})  # fmt: skip

    registry = CollectorRegistry()
    monitor = ShadowMonitor.for_config(config({"id": "a"}, {"id": "b"}), tmp_path, registry)
    assert monitor is not None
    monitor.start()
    try:
        first = monitor.pid
        for camera in ("a", "b"):  # both below the floor: a note and series each
            for _ in range(2):
                monitor.take(_report(agreement=BAD, camera=camera))
        assert "shadow: a " in monitor.note and "shadow: b " in monitor.note
        monitor.use_config(config({"id": "a"}))
        assert monitor.pid == first  # what the helper reads did not change
        assert "shadow: a " in monitor.note and "shadow: b " not in monitor.note
        text = generate_latest(registry).decode()
        assert 'camera="a"' in text and 'camera="b"' not in text
        monitor.use_config(config({"id": "a", "conf_threshold": 0.6}))
        assert monitor.pid not in (None, first)
        assert monitor.setup.config.cameras[0].conf_threshold == 0.6
    finally:
        monitor.stop()
