"""edged bench-pipeline without running anything heavy: checks, report, CLI, daemon config."""

from __future__ import annotations

import argparse
import json
import os
import signal

import numpy as np
import pytest

from edged.config import parse_config
from edged.tools import pipeline_bench as pb
from edged.tools.pipeline_bench.measure import percentile_summary as percentiles
from edged.tools.pipeline_bench.report import summary_rows


def _result(model, precision, contender, fps, mode=None, added=(1.0, 5.0), pss=300.0):
    stats = {"p50": 10.0, "p90": 11.0, "p99": 12.0, "mean": 10.0, "max": 13.0}
    return {
        "model": model, "precision": precision, "contender": contender, "mode": mode,
        "status": "ok", "frames": 100, "fps": fps, "e2e_ms": stats, "infer_ms": stats,
        "added_ms": {**stats, "p50": added[0], "p99": added[1]}, "cpu_percent": 150.0,
        "other_cpu_percent": 3.0, "pss_mb": pss, "processes": 7,
    }  # fmt: skip


def _record(results):
    return {
        "models": [
            {"name": "m32", "precision": "fp32"},
            {"name": "m8", "precision": "int8-static"},
        ],
        "results": results,
        "decode_nms": {
            "scenarios": {
                "typical": {"candidates": 300, "p99": 0.6, "cpu_ms": {"p99": 0.5}},
            }
        },
    }


def _by_name(checks):
    return {c["name"]: c for c in checks}


def test_checks_are_computed_from_the_figures_of_the_run():
    record = _record([
        _result("m32", "fp32", "inference", 26.0),
        _result("m32", "fp32", "ultralytics", 20.0),
        _result("m32", "fp32", "edged", 24.0, "lossless", pss=390.0),
        _result("m32", "fp32", "edged", 12.0, "realtime", added=(2.5, 9.0)),
        _result("m8", "int8-static", "inference", 60.0),
        _result("m8", "int8-static", "edged", 50.0, "lossless", added=(4.0, 20.0), pss=410.0),
    ])  # fmt: skip
    checks = _by_name(pb.compute_checks(record))
    c = checks["edged_vs_inference_fps[m32]"]
    assert c["value"] == pytest.approx(24 / 26, abs=1e-3) and c["passed"] is True
    assert c["inputs"]["edged_fps"] == 24.0 and c["inputs"]["inference_fps"] == 26.0
    c = checks["edged_vs_inference_fps[m8]"]
    assert c["value"] == pytest.approx(50 / 60, abs=1e-3) and c["passed"] is False
    # Added latency from the realtime run when there is one, else from lossless.
    assert checks["added_latency_p50_ms[m32]"]["value"] == 2.5
    assert checks["added_latency_p50_ms[m32]"]["inputs"]["mode"] == "realtime"
    assert checks["added_latency_p99_ms[m32]"]["passed"] is True
    assert checks["added_latency_p50_ms[m8]"]["inputs"]["mode"] == "lossless"
    assert checks["added_latency_p99_ms[m8]"]["passed"] is False
    assert checks["edged_pss_mb[m32]"]["passed"] is True
    assert checks["edged_pss_mb[m8]"]["passed"] is False
    c = checks["edged_fp32_vs_ultralytics_fp32_fps"]
    assert c["value"] == pytest.approx(1.2) and c["passed"] is True
    c = checks["edged_static_vs_ultralytics_fp32_fps"]
    assert c["value"] == pytest.approx(2.5) and c["passed"] is True
    assert c["inputs"]["edged_model"] == "m8" and c["inputs"]["ultralytics_model"] == "m32"
    assert checks["decode_nms_p99_ms[typical: 8400 anchors]"]["passed"] is True


def test_checks_without_a_contender_are_not_measured_rather_than_failed():
    record = _record([
        _result("m32", "fp32", "inference", 26.0),
        {"model": "m32", "precision": "fp32", "contender": "ultralytics", "mode": None,
         "status": "skipped", "reason": "not installed"},
        {"model": "m32", "precision": "fp32", "contender": "edged", "mode": "lossless",
         "status": "failed", "reason": "boom"},
    ])  # fmt: skip
    checks = _by_name(pb.compute_checks(record))
    for name in ("edged_vs_inference_fps[m32]", "edged_fp32_vs_ultralytics_fp32_fps",
                 "edged_static_vs_ultralytics_fp32_fps", "edged_pss_mb[m32]"):  # fmt: skip
        assert checks[name]["passed"] is None and checks[name]["value"] is None


def test_report_prints_every_contender_and_check(capsys):
    record = _record([
        _result("m32", "fp32", "inference", 26.0),
        _result("m32", "fp32", "edged", 24.0, "lossless"),
        {"model": "m8", "precision": "int8-static", "contender": "ultralytics", "mode": None,
         "status": "skipped", "reason": "FP32 only"},
    ])  # fmt: skip
    record.update(
        video={"path": "/x/v.mp4", "width": 1280, "height": 720},
        intra_op_threads=2,
        machine={"cpus": 2, "load_start": [1.0, 1, 1], "load_end": [1.0, 1, 1]},
        duration_s=1.0,
        noisy=True,
    )
    record["decode_nms"] = pb.decode_nms_microbench(runs=3, scenarios=("empty", "typical"))
    record["checks"] = pb.compute_checks(record)
    pb.print_report(record)
    out = capsys.readouterr().out
    assert "edged (lossless)" in out and "skipped" in out
    assert "edged_vs_inference_fps[m32]" in out  # brackets survive rich markup
    assert "rerun on a quiet machine" in out


def test_raw_head_outputs_decode_to_the_synthetic_scene():
    from edged.postprocess.raw_heads import dense_output

    output = pb.synthetic_yolov8_output("typical")
    outputs, head = pb.yolov8_head_of(output)
    assert [o.shape for o in outputs[:2]] == [(1, 64, 80, 80), (1, 80, 80, 80)]
    decoded = dense_output(outputs, head)
    np.testing.assert_allclose(decoded[0, 4:], output[0, 4:], atol=1e-5)  # class scores
    near = output[0, 4:].max(axis=0) > 0.25
    error = np.abs(decoded[0, :4, near] - output[0, :4, near])
    assert np.median(error) < 1.0  # pixels: boxes within reach of the DFL come back


def test_synthetic_outputs_and_micro_benchmark():
    assert pb.synthetic_yolov8_output("typical").shape == (1, 84, 8400)
    micro = pb.decode_nms_microbench(runs=5)
    s = micro["scenarios"]
    assert s["empty"]["candidates"] == 0 and s["empty"]["detections"] == 0
    # 20 objects × 15 anchors, less those two nearby objects share.
    assert 250 < s["typical"]["candidates"] <= 300 and 15 <= s["typical"]["detections"] <= 30
    assert s["dense"]["candidates"] == 8400 and s["dense"]["detections"] == 300
    # The same scenes as raw YOLOv8 head outputs (the decoder of a model cut at its head).
    for name in ("empty", "typical", "dense"):
        raw = s[f"{name} (raw head)"]
        assert raw["candidates"] == s[name]["candidates"]
        assert abs(raw["detections"] - s[name]["detections"]) <= 2
    for m in s.values():
        assert {"p50", "p99", "max"} <= set(m) and {"p50", "p99"} <= set(m["cpu_ms"])
    json.dumps(micro)


def test_daemon_config_is_a_valid_edged_config(tmp_path):
    settings = pb.PipelineBenchSettings(models=("m.onnx",), source="v.mp4", threads=2)
    for mode, fps in (("lossless", None), ("realtime", 7.5)):
        data = pb.daemon_config(settings, {"path": "m.onnx", "backend": "onnxruntime"}, mode,
                                  tmp_path, "ipc:///tmp/x.sock", fps)  # fmt: skip
        config = parse_config(data)
        assert config.source.mode == mode and config.source.fps == fps
        assert config.inference.onnxruntime.intra_op_threads == 2
        assert config.publish.wait_for_subscribers == 1 and not config.http.enabled
        assert config.pipeline.exit_at_end


def test_effective_threads_follows_the_backend_default():
    from edged.backends.onnxruntime import default_intra_op_threads

    assert pb.effective_threads(None) == default_intra_op_threads()
    assert pb.effective_threads(1) == 1


def test_cli_registration_and_user_errors(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd")
    pb.register_pipeline_bench(sub)
    args = parser.parse_args(["bench-pipeline", "--model", "a.onnx", "--model", "b.onnx",
                              "--source", "v.mp4", "--threads", "2", "--frames", "30"])  # fmt: skip
    settings = pb.settings_from_args(args)
    assert settings.models == ("a.onnx", "b.onnx") and settings.frames == 30
    assert settings.contenders == pb.CONTENDERS and settings.threads == 2
    assert args.func(args) == 2  # neither file exists
    assert "no such model file" in capsys.readouterr().err
    out = tmp_path / "micro.json"
    assert pb.main(["--micro-only", "--micro-runs", "3", "--out", str(out)]) == 0
    assert "typical" in json.loads(out.read_text())["scenarios"]


def test_percentiles():
    stats = percentiles(np.arange(101, dtype=float))
    assert stats["p50"] == 50 and stats["p99"] == 99 and stats["max"] == 100
    assert percentiles([])["p50"] is None


def test_numbers_out_of_range_are_refused_naming_the_option(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        pb.main(["--source", "v.mp4", "--frames", "-3"])
    assert exited.value.code == 2
    assert "--frames: -3 is out of range (must be ≥ 1)" in capsys.readouterr().err


def test_daemon_config_runs_an_onnx_file_on_another_backend_through_a_manifest(tmp_path):
    from edged.models import resolve_from_config

    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    settings = pb.PipelineBenchSettings(models=(str(model),), source="v.mp4", threads=2)
    data = pb.daemon_config(settings, {"path": str(model), "backend": "openvino"}, "lossless",
                            tmp_path, "ipc:///tmp/x.sock", None)  # fmt: skip
    config = parse_config(data)
    assert config.inference.openvino.threads == config.inference.ncnn.threads == 2
    assert config.inference.onnxruntime.intra_op_threads == 2
    resolved = resolve_from_config(config.model)
    assert (resolved.backend, resolved.path) == ("openvino", model.resolve())


# -- --cameras N ----------------------------------------------------------------------------------


def test_the_camera_run_configures_n_looped_camera_paced_file_cameras(tmp_path):
    settings = pb.PipelineBenchSettings(models=("m.onnx",), source="v.mp4", cameras=3)
    data = pb.daemon_config(settings, {"path": "m.onnx", "backend": "onnxruntime"}, "cameras",
                            tmp_path, "ipc:///tmp/x.sock", 25.0)  # fmt: skip
    config = parse_config(data)
    cameras = config.camera_list()
    assert [c.id for c in cameras] == ["cam0", "cam1", "cam2"]
    assert {(c.source.uri, c.source.mode, c.source.loop, c.source.fps) for c in cameras} == {
        ("v.mp4", "realtime", True, 25.0)
    }
    assert pb.run.edged_modes(settings) == ("lossless", "realtime", "cameras", "cameras-paced")
    paced = parse_config(
        pb.daemon_config(
            settings,
            {"path": "m.onnx", "backend": "onnxruntime"},
            "cameras-paced",
            tmp_path,
            "ipc:///tmp/x.sock",
            5.0,
        )
    )
    rates = [c.source.fps for c in paced.camera_list()]
    assert rates == sorted(set(rates)) and rates[0] == 5.0  # out of phase: each a bit faster
    assert pb.run.edged_modes(pb.PipelineBenchSettings(models=(), source="v")) == (
        "lossless", "realtime")  # fmt: skip


def _message(camera: str, seq: int, e2e: float = 12.0, infer: float = 10.0) -> dict:
    return {"camera_id": camera, "seq": seq, "latency_ms": {"end_to_end": e2e, "infer": infer}}


def test_per_camera_figures_and_fairness_come_from_the_messages():
    from edged.tools.pipeline_bench.cameras import per_camera

    # Over 10 s: cam0 30 frames (seqs 0..29), cam1 20 frames with 2 skipped, cam2 10 frames.
    messages = [_message("cam0", s) for s in range(30)]
    messages += [_message("cam1", s, e2e=15.0) for s in range(22) if s not in (5, 6)]
    messages += [_message("cam2", s) for s in range(10)]
    times = [i * 10.0 / (len(messages) - 1) for i in range(len(messages))]
    figures = per_camera(messages, times)
    cams = figures["cameras"]
    assert [cams[c]["fps"] for c in ("cam0", "cam1", "cam2")] == [3.0, 2.0, 1.0]
    assert cams["cam1"]["skipped_frames"] == 2 and cams["cam0"]["skipped_frames"] == 0
    assert cams["cam1"]["added_ms"]["p50"] == pytest.approx(5.0)
    assert figures["total_fps"] == 6.0 and figures["camera_count"] == 3
    assert figures["fps_spread"] == pytest.approx(0.5)  # cam0 and cam2: ±50 % of the mean 2.0
    # A configured camera that published nothing is starved, not absent.
    starved = per_camera(messages, times, ["cam0", "cam1", "cam2", "cam3"])
    assert starved["cameras"]["cam3"]["fps"] == 0.0 and starved["camera_count"] == 4
    assert starved["fps_spread"] == pytest.approx(1.0)  # 0 FPS: 100 % below the mean 1.5


def test_camera_checks_compare_the_total_with_inference_and_the_spread():
    cameras = _result("m32", "fp32", "edged", 30.0, "cameras", added=(2.0, 6.0))
    cameras.update(camera_count=4, total_fps=27.0, fps_spread=0.2,
                   cameras={f"cam{i}": {"fps": 6.75} for i in range(4)})  # fmt: skip
    record = _record([_result("m32", "fp32", "inference", 28.0), cameras])
    checks = _by_name(pb.compute_checks(record))
    total = checks["cameras_total_vs_inference_fps[m32, 4 cameras]"]
    assert total["value"] == pytest.approx(27 / 28, abs=1e-3) and total["passed"] is True
    assert checks["cameras_fps_spread[m32, 4 cameras]"]["passed"] is False
    # Added latency comes from the paced run only (saturated, frames wait for each other).
    assert checks["cameras_added_latency_p50_ms[m32, 4 cameras]"]["passed"] is None
    paced = _result("m32", "fp32", "edged", 14.0, "cameras-paced", added=(2.5, 6.0))
    paced.update(total_fps=14.0)
    record["results"].append(paced)
    latency = _by_name(pb.compute_checks(record))["cameras_added_latency_p50_ms[m32, 4 cameras]"]
    assert latency["value"] == 2.5 and latency["passed"] is True
    # PSS per camera beyond the first: against the one-camera lossless run of the same model.
    memory = "cameras_pss_mb_per_extra_camera[m32, 4 cameras]"
    assert _by_name(pb.compute_checks(record))[memory]["passed"] is None  # no single run
    record["results"].append(_result("m32", "fp32", "edged", 25.0, "lossless", pss=300.0))
    cameras["pss_mb"] = 450.0
    check = _by_name(pb.compute_checks(record))[memory]
    assert check["value"] == 50.0 and check["passed"] is True
    assert not any("cameras" in name for name in _by_name(pb.compute_checks(_record([]))))


def test_the_report_has_a_row_per_camera(capsys):
    from rich.console import Console

    from edged.tools.pipeline_bench.report import camera_table

    stats = {"p50": 12.0, "p90": 13.0, "p99": 14.0, "mean": 12.0, "max": 15.0}
    run = _result("m32", "fp32", "edged", 27.0, "cameras")
    run.update(camera_count=2, total_fps=27.0, fps_spread=0.04, skipped_frames=9, cameras={
        c: {"frames": 50, "fps": 13.5, "skipped_frames": 4, "e2e_ms": stats, "added_ms": stats}
        for c in ("front", "back")})  # fmt: skip
    Console(width=160).print(camera_table(run))
    out = capsys.readouterr().out
    assert "front" in out and "back" in out and "all" in out and "2 cameras" in out


def test_each_edged_options_set_is_a_run_of_its_own_with_its_own_checks(tmp_path):
    """``--edged-options requests=1 --edged-options requests=2``: the set reaches the model's
    backend section of the daemon's config, and each set's runs are checked on their own."""
    settings = pb.PipelineBenchSettings(models=("m.xml",), source="v.mp4", threads=2,
                                        edged_options=("requests=1", "requests=2"))  # fmt: skip
    model = {"path": "m.xml", "backend": "openvino"}
    data = pb.daemon_config(settings, model, "lossless", tmp_path, "ipc:///tmp/x.sock", None,
                            options="requests=2,cpu_pinning=false")  # fmt: skip
    openvino = parse_config(data).inference.openvino
    assert (openvino.requests, openvino.cpu_pinning, openvino.threads) == (2, False, 2)
    record = _record([
        _result("m8", "int8-static", "inference", 50.0),
        _result("m8", "int8-static", "ultralytics", 40.0),
        {**_result("m8", "int8-static", "edged", 44.0, "lossless"), "options": "requests=1"},
        {**_result("m8", "int8-static", "edged", 48.0, "lossless"), "options": "requests=2"},
    ])  # fmt: skip
    checks = _by_name(pb.compute_checks(record))
    assert checks["edged_vs_inference_fps[m8]"]["value"] == pytest.approx(0.88)  # the first
    assert checks["edged_vs_inference_fps[m8 requests=1]"]["value"] == pytest.approx(0.88)
    assert checks["edged_vs_inference_fps[m8 requests=2]"]["value"] == pytest.approx(0.96)
    same = checks["edged_vs_ultralytics_same_model_fps[m8 requests=2]"]
    assert same["value"] == pytest.approx(1.2) and same["passed"] is True
    assert "edged (lossless) [requests=2]" in str(summary_rows(record))


def test_a_malformed_edged_options_set_is_refused(capsys) -> None:
    assert pb.main(["-m", __file__, "--source", __file__, "--edged-options", "requests"]) == 2
    assert "--edged-options 'requests': expected KEY=VALUE" in capsys.readouterr().err


def test_cpu_window_judges_other_load_on_the_window_it_records():
    """A window just under MIN_LOAD_WINDOW_S that rounds up to it is judged, as recorded."""
    from edged.tools.pipeline_bench.measure import CpuWindow
    from edged.tools.system import MIN_LOAD_WINDOW_S

    window = CpuWindow(root=None)
    window.start, window.stop = 100.0, 100.0 + MIN_LOAD_WINDOW_S - 0.0004
    window._busy0, window._busy1 = 10.0, 10.5
    result = window.result()
    assert result["window_s"] == MIN_LOAD_WINDOW_S
    assert result["other_cpu_percent"] == 50.0
    window.stop = 100.0 + MIN_LOAD_WINDOW_S - 0.002
    assert window.result()["other_cpu_percent"] is None


# -- --edged-modes cameras-kill -------------------------------------------------------------------


WALL0 = 1000.0  # wall time = monotonic + WALL0 in these made-up runs


def _stream(camera: str, start: float, end: float, fps: float, read_from: float = 0.0) -> list:
    """(end - start) × fps messages of ``camera`` published mid-way between ticks of 1/fps s
    (no frame on a window's edge; times monotonic), captured 40 ms before; the bench reads each
    10 ms after it was published, or at ``read_from`` when it was busy until then."""
    from edged.tools.pipeline_bench.kill import Arrival

    times = [start + (k + 0.5) / fps for k in range(round((end - start) * fps))]
    return [Arrival(max(t + 0.01, read_from), camera, WALL0 + t - 0.04, WALL0 + t)
            for t in times]  # fmt: skip


def test_kill_figures_count_each_window_and_compare_the_others_with_before():
    from edged.tools.pipeline_bench.kill import Arrival, kill_figures

    arrivals = (_stream("cam0", 0, 10, 4) + _stream("cam1", 0, 30, 4) + _stream("cam2", 0, 10, 4)
                + _stream("cam2", 10, 20, 3.6) + _stream("cam2", 20, 30, 4))  # fmt: skip
    # In flight from before the kill: not a reconnect.
    arrivals.append(Arrival(20.3, "cam0", 1009.0, 1020.29))
    arrivals.append(Arrival(23.0, "cam0", 1022.9, 1022.99))  # captured after the restart
    arrivals.sort()
    spans = {"before": (0.0, 10.0), "during": (10.0, 20.0), "after": (20.5, 30.0)}
    windows = {w: (WALL0 + a, WALL0 + b) for w, (a, b) in spans.items()}
    figures = kill_figures(arrivals, windows, ["cam0", "cam1", "cam2"], "cam0", (20.5, 1020.5))
    before, during = figures["windows"]["before"], figures["windows"]["during"]
    assert before["frames"] == {"cam0": 40, "cam1": 40, "cam2": 40} and before["s"] == 10.0
    assert before["fps"] == {"cam0": 4.0, "cam1": 4.0, "cam2": 4.0} and before["others_fps"] == 8.0
    assert during["frames"] == {"cam0": 0, "cam1": 40, "cam2": 36}
    assert figures["others_during_vs_before"] == {"cam1": 1.0, "cam2": 0.9}
    assert figures["others_total_during_vs_before"] == pytest.approx(76 / 80)
    assert figures["others_fps_change"] == pytest.approx(0.1)  # the largest of one camera
    assert figures["windows"]["after"]["frames"]["cam0"] == 1  # the one published after 1020.5
    assert figures["others_after_vs_before"]["cam1"] == pytest.approx(38 / 9.5 / 4, abs=1e-4)
    assert figures["reconnected"] is True and figures["reconnect_s"] == 2.5
    assert figures["killed"] == "cam0"

    # Never back: no reconnect time. A camera with no frame before: no change can be claimed.
    lost = [a for a in arrivals if not (a.camera == "cam0" and a.arrived > 20)]
    figures = kill_figures(lost, windows, ["cam0", "cam1", "cam2", "cam3"], "cam0", (20.5, 1020.5))
    assert (figures["reconnected"], figures["reconnect_s"]) == (False, None)
    assert figures["others_during_vs_before"]["cam3"] is None
    assert figures["others_fps_change"] is None


def test_kill_checks_judge_the_largest_change_and_the_reconnect():
    run = _result("m32", "fp32", "edged", 12.0, "cameras-kill")
    run.update(cameras_config=4, killed="cam0", fps_limit=4.1, others_fps_change=0.04,
               others_during_vs_before={"cam1": 0.96, "cam2": 1.0, "cam3": 1.01},
               others_total_during_vs_before=0.99, reconnected=True, reconnect_s=2.71)  # fmt: skip
    checks = _by_name(pb.compute_checks(_record([run])))
    change = checks["camera_kill_others_fps_change[m32, 4 cameras]"]
    assert (change["value"], change["passed"], change["target"]) == (0.04, True, "< 0.1")
    assert change["inputs"]["during_vs_before"]["cam1"] == 0.96
    back = checks["camera_kill_reconnected[m32, cam0]"]
    assert (back["value"], back["passed"]) == (2.71, True)
    run.update(others_fps_change=0.1, reconnected=False, reconnect_s=None)
    checks = _by_name(pb.compute_checks(_record([run])))
    assert checks["camera_kill_others_fps_change[m32, 4 cameras]"]["passed"] is False
    assert checks["camera_kill_reconnected[m32, cam0]"]["passed"] is False
    run.update(others_fps_change=None)
    checks = _by_name(pb.compute_checks(_record([run])))
    assert checks["camera_kill_others_fps_change[m32, 4 cameras]"]["passed"] is None
    assert not any("kill" in name for name in _by_name(pb.compute_checks(_record([]))))


def test_kill_cameras_are_paced_live_streams_below_the_inference_limit(tmp_path):
    from edged.tools.pipeline_bench.kill import RECONNECT, kill_fps_limit, stream_cameras

    assert kill_fps_limit(None, 12.0, 33.0, 4) == (4.12, True)  # together half inference's
    assert kill_fps_limit(2.5, 12.0, 33.0, 4) == (2.5, True)  # --realtime-fps
    assert kill_fps_limit(None, 12.0, 120.0, 4) == (None, True)  # the stream's own is lower
    assert kill_fps_limit(None, 12.0, None, 4) == (None, False)  # inference not measured
    settings = pb.PipelineBenchSettings(models=("m.onnx",), source="v.mp4", cameras=2)
    uris = ["tcp://127.0.0.1:20001", "tcp://127.0.0.1:20002"]
    data = pb.daemon_config(settings, {"path": "m.onnx", "backend": "onnxruntime"},
                            "cameras-kill", tmp_path, "ipc:///tmp/x.sock", None,
                            cameras=stream_cameras(uris, 4.12, 1))  # fmt: skip
    cameras = parse_config(data).camera_list()
    assert [(c.id, c.source.uri, c.source.mode, c.fps_limit) for c in cameras] == [
        ("cam0", uris[0], "live", 4.12), ("cam1", uris[1], "live", 4.12)]  # fmt: skip
    assert cameras[0].source.reconnect.max_backoff_s == RECONNECT["max_backoff_s"]
    assert "fps_limit" not in stream_cameras(uris, None, 1)[0]


def test_naming_an_n_camera_mode_runs_only_the_modes_named(capsys):
    kill = pb.PipelineBenchSettings(models=(), source="v", cameras=3, edged_modes=("cameras-kill",))
    assert pb.run.edged_modes(kill) == ("cameras-kill",)
    both = pb.PipelineBenchSettings(models=(), source="v", cameras=3,
                                    edged_modes=("lossless", "cameras-paced"))  # fmt: skip
    assert pb.run.edged_modes(both) == ("lossless", "cameras-paced")
    args = ["-m", __file__, "--source", __file__, "--edged-modes", "cameras-kill"]
    assert pb.main(args) == 2
    assert "--edged-modes cameras-kill needs --cameras N with N >= 2" in capsys.readouterr().err


def test_the_report_has_a_kill_table(capsys):
    from rich.console import Console

    from edged.tools.pipeline_bench.report import kill_table

    run = _result("m32", "fp32", "edged", 12.0, "cameras-kill")
    fps = {"cam0": 4.0, "cam1": 4.0}
    run.update(cameras_config=2, killed="cam0", fps_limit=4.12, reconnected=True,
               reconnect_s=2.7, others_during_vs_before={"cam1": 0.98},
               others_after_vs_before={"cam1": 1.01}, others_total_during_vs_before=0.98,
               others_total_after_vs_before=1.01,
               windows={w: {"fps": fps, "others_fps": 4.0} for w in ("before", "during",
                                                                    "after")})  # fmt: skip
    Console(width=160).print(kill_table(run))
    out = capsys.readouterr().out
    assert "cam0 (killed)" in out and "0.98" in out and "reconnected 2.70 s" in out
    assert "edged (cameras-kill)" in str(summary_rows(_record([run])))


def test_kill_windows_count_by_publish_time_not_a_backlog_read_late():
    """The restart's ``start()`` blocked the reading for 5 s: the messages published meanwhile
    are read in a burst after it, but the "after" window counts by publish time, so a steady
    4 FPS stays 4 FPS (counted by read time it would be a burst)."""
    from edged.tools.pipeline_bench.kill import arrival, kill_figures, window_end

    blocked = (20.0, 25.0)  # monotonic; the server listened at 25.0 (wall 1025.0)
    arrivals = []
    for camera in ("cam1", "cam2"):
        arrivals += _stream(camera, 0, blocked[0], 4) + _stream(camera, blocked[0], 40, 4,
                                                                read_from=blocked[1])  # fmt: skip
    arrivals += _stream("cam0", 0, 10, 4) + _stream("cam0", 27, 40, 4)
    arrivals.sort()
    backlog = [a for a in arrivals if a.published - WALL0 < blocked[1] <= a.arrived]
    assert len(backlog) == 2 * 20  # 5 s × 4 FPS × 2 cameras, all read at 25.0
    others = ["cam1", "cam2"]
    start = WALL0 + 0.0
    before = (start, window_end(arrivals, start, others, 40))
    during = (WALL0 + 10.0, window_end(arrivals, WALL0 + 10.0, others, 40))
    after = (WALL0 + blocked[1], window_end(arrivals, WALL0 + blocked[1], others, 40))
    assert after[1] == pytest.approx(WALL0 + 25 + 4.875)  # the 40th frame published after it
    assert window_end(arrivals, WALL0 + 39.0, others, 40) is None  # not published yet
    windows = {"before": before, "during": during, "after": after}
    figures = kill_figures(arrivals, windows, ["cam0", *others], "cam0", (blocked[1], WALL0 + 25))
    assert figures["others_after_vs_before"] == {"cam1": 1.0, "cam2": 1.0}
    assert figures["windows"]["after"]["frames"] == {"cam0": 12, "cam1": 20, "cam2": 20}
    assert figures["reconnect_s"] == pytest.approx(27.125 + 0.01 - blocked[1])  # read time

    # A message's publish time is its capture wall time plus its end-to-end latency.
    message = {"camera_id": "cam1", "timestamp": 1000.5, "latency_ms": {"end_to_end": 250.0}}
    assert arrival(message, 7.0) == (7.0, "cam1", 1000.5, 1000.75)


def test_kill_checks_do_not_judge_unpaced_cameras():
    """Unpaced (the inference-only run failed), the others speed up by construction when one
    camera dies: the change is not measured, with the reason; the reconnect still is."""
    from edged.tools.pipeline_bench.kill import UNPACED

    run = _result("m32", "fp32", "edged", 12.0, "cameras-kill")
    run.update(cameras_config=3, killed="cam0", fps_limit=None, paced=False,
               others_fps_change=0.3, others_during_vs_before={"cam1": 1.3, "cam2": 1.3},
               others_total_during_vs_before=1.3, reconnected=True, reconnect_s=2.0)  # fmt: skip
    checks = _by_name(pb.compute_checks(_record([run])))
    change = checks["camera_kill_others_fps_change[m32, 3 cameras]"]
    assert (change["value"], change["passed"]) == (None, None)
    assert change["inputs"]["reason"] == UNPACED
    assert checks["camera_kill_reconnected[m32, cam0]"]["passed"] is True


def test_cameras_kill_without_a_way_to_pace_is_refused(capsys) -> None:
    args = ["--source", __file__, "--model", __file__, "--edged-modes", "cameras-kill",
            "--cameras", "3"]  # fmt: skip
    assert pb.main([*args, "--contenders", "edged"]) == 2
    err = capsys.readouterr().err
    assert "cameras-kill needs the inference contender or --realtime-fps" in err


def test_a_stream_server_whose_ffmpeg_exits_says_so_at_once(tmp_path, monkeypatch):
    """An FFmpeg that exits (here: no such video) is reported when it exits, with its log; the
    listen timeout only bounds a hang (set to an hour here: pytest's timeout would fire)."""
    from edged.tools.pipeline_bench import streams

    if streams.ffmpeg_path() is None:
        pytest.skip("ffmpeg not installed")
    monkeypatch.setattr(streams, "LISTEN_TIMEOUT_S", 3600.0)
    server = streams.StreamServer(str(tmp_path / "missing.mp4"), tmp_path / "ffmpeg.log")
    with pytest.raises(RuntimeError, match=r"exited with code \d+ before listening") as exc:
        server.start()
    assert "missing.mp4" in str(exc.value) and not server.alive()
    assert streams.LISTEN_TIMEOUT_S >= 60  # the module's own, restored: generous for CI


def test_a_stream_server_taken_by_a_client_at_once_is_seen_serving(tmp_path, monkeypatch):
    """A client that connects the instant FFmpeg listens (a daemon retrying in a tight loop)
    makes FFmpeg close its listening socket at once; start() still returns, having seen the
    accepted connection (CI once waited out the listen timeout for a LISTEN it never saw)."""
    import contextlib
    import socket
    import threading

    from edged.tools.pipeline_bench import streams
    from tests.paths import VIDEO, require

    if streams.ffmpeg_path() is None:
        pytest.skip("ffmpeg not installed")
    monkeypatch.setattr(streams, "LISTEN_TIMEOUT_S", 60.0)  # bounds a hang only
    server = streams.StreamServer(str(require(VIDEO)), tmp_path / "ffmpeg.log")
    connected, stop = [], threading.Event()

    def eager_client() -> None:
        while not stop.is_set() and not connected:
            with contextlib.suppress(OSError):  # not listening yet: try again at once
                connected.append(socket.create_connection(("127.0.0.1", server.port), 1))

    client = threading.Thread(target=eager_client, daemon=True)
    client.start()
    try:
        server.start()
        assert server.alive()
        assert streams.serving(server.proc.pid, server.port)
    finally:
        stop.set()
        client.join(10)
        server.stop()
        for sock in connected:
            sock.close()
    assert connected, "the client never connected"


def test_a_daemon_launched_is_ended_when_setting_up_its_sampler_fails(tmp_path, monkeypatch):
    """Whatever raises after the daemon's Popen (here the PSS sampler) ends it, in its own
    session, and closes the subscriber: nothing is left running or open."""
    from edged.tools.pipeline_bench import daemon as bench_daemon
    from tests.paths import VIDEO, YOLOV5N, require

    started, subs = [], []
    real_popen, real_subscriber = bench_daemon.subprocess.Popen, bench_daemon._subscriber

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def subscriber(endpoint):
        subs.append(real_subscriber(endpoint))
        return subs[-1]

    class Broken:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("sampler broke")

    monkeypatch.setattr(bench_daemon.subprocess, "Popen", popen)
    monkeypatch.setattr(bench_daemon, "_subscriber", subscriber)
    monkeypatch.setattr(bench_daemon, "PssSampler", Broken)
    settings = pb.PipelineBenchSettings(models=(str(require(YOLOV5N)),),
                                        source=str(require(VIDEO)))  # fmt: skip
    endpoint = f"ipc://{tmp_path}/pub.sock"
    config = pb.daemon_config(settings, {"path": str(YOLOV5N), "backend": "onnxruntime"},
                              "lossless", tmp_path, endpoint, None)  # fmt: skip
    try:
        with (pytest.raises(RuntimeError, match="sampler broke"),
              bench_daemon.launched(config, tmp_path, endpoint, settings)):  # fmt: skip
            pass
        [proc] = started
        assert proc.poll() is not None and subs[0].closed
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_stream_ports_are_never_handed_out_twice(monkeypatch):
    """Every camera's port is picked before any FFmpeg binds one: a port free a moment ago is
    still free, so only the record of ports handed out keeps two cameras off the same one."""
    import socket

    from edged.tools.pipeline_bench import streams

    class FirstChoice:  # the worst luck: the same (free) pick every time
        def choice(self, pool):
            for port in pool:  # the lowest port free now (another program may hold 10000)
                with socket.socket() as probe:
                    try:
                        probe.bind(("127.0.0.1", port))
                    except OSError:
                        continue
                    return port
            raise AssertionError("no free port")

    monkeypatch.setattr(streams.random, "SystemRandom", FirstChoice)
    ports = [streams.free_port() for _ in range(3)]
    assert len(set(ports)) == 3, ports
