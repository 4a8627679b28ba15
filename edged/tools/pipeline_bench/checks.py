"""The issue's ratio checks, computed from the values of one run."""

from __future__ import annotations

from typing import Any

from edged.tools.pipeline_bench.kill import UNPACED
from edged.tools.pipeline_bench.settings import (
    TARGET_ADDED_P50_MS,
    TARGET_ADDED_P99_MS,
    TARGET_CAMERA_FPS_SPREAD,
    TARGET_CAMERAS_VS_INFERENCE,
    TARGET_DECODE_NMS_P99_MS,
    TARGET_EDGED_VS_INFERENCE,
    TARGET_FP32_VS_ULTRALYTICS,
    TARGET_KILL_OTHERS_FPS_CHANGE,
    TARGET_PSS_MB,
    TARGET_PSS_PER_EXTRA_CAMERA_MB,
    TARGET_SAME_MODEL_VS_ULTRALYTICS,
    TARGET_STATIC_VS_ULTRALYTICS,
)


def _find(
    record: dict[str, Any],
    contender: str,
    *,
    model: str | None = None,
    precision: str | None = None,
    mode: str | None = None,
) -> dict[str, Any] | None:
    for r in record["results"]:
        if r.get("status") != "ok" or r["contender"] != contender:
            continue
        if model is not None and r["model"] != model:
            continue
        if precision is not None and r["precision"] != precision:
            continue
        if mode is not None and r.get("mode") != mode:
            continue
        return r
    return None


def _check(
    name: str, target: str, value: float | None, passed: bool | None, **inputs: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "target": target,
        "value": None if value is None else round(value, 3),
        "passed": passed,
        "inputs": inputs,
    }


def _ratio(a: dict | None, b: dict | None) -> float | None:
    if a is None or b is None or not b.get("fps"):
        return None
    return a["fps"] / b["fps"]


def compute_checks(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 9's targets, evaluated on the figures of this one run (``passed`` None: not run)."""
    checks = []
    for info in record["models"]:
        name, precision = info["name"], info["precision"]
        edged = _find(record, "edged", model=name, mode="lossless")
        inference = _find(record, "inference", model=name)
        ratio = _ratio(edged, inference)
        checks.append(
            _check(
                f"edged_vs_inference_fps[{name}]",
                f">= {TARGET_EDGED_VS_INFERENCE}",
                ratio,
                None if ratio is None else ratio >= TARGET_EDGED_VS_INFERENCE,
                edged_fps=edged and edged["fps"],
                inference_fps=inference and inference["fps"],
                precision=precision,
            )
        )
        latency = _find(record, "edged", model=name, mode="realtime") or edged
        for q, limit in (("p50", TARGET_ADDED_P50_MS), ("p99", TARGET_ADDED_P99_MS)):
            value = None if latency is None else latency["added_ms"][q]
            checks.append(
                _check(
                    f"added_latency_{q}_ms[{name}]",
                    f"<= {limit}",
                    value,
                    None if value is None else value <= limit,
                    mode=latency and latency["mode"],
                    precision=precision,
                )
            )
        # The same file run by Ultralytics (e.g. its own OpenVINO INT8 export): edged overlaps
        # decode, letterbox and NMS with inference, Ultralytics runs them in series.
        peer = _find(record, "ultralytics", model=name)
        ratio = _ratio(edged, peer)
        if peer is not None or info.get("ultralytics_layout"):
            checks.append(
                _check(
                    f"edged_vs_ultralytics_same_model_fps[{name}]",
                    f">= {TARGET_SAME_MODEL_VS_ULTRALYTICS}",
                    ratio,
                    None if ratio is None else ratio >= TARGET_SAME_MODEL_VS_ULTRALYTICS,
                    edged_fps=edged and edged["fps"],
                    ultralytics_fps=peer and peer["fps"],
                    backend=info.get("backend"),
                    precision=precision,
                )
            )
        checks += camera_checks(record, name, inference)
        checks += kill_checks(record, name)
        checks += option_checks(record, name, inference, peer)
        pss = None if edged is None else edged.get("pss_mb")
        checks.append(
            _check(
                f"edged_pss_mb[{name}]",
                f"<= {TARGET_PSS_MB}",
                pss,
                None if pss is None else pss <= TARGET_PSS_MB,
                processes=edged and edged.get("processes"),
                precision=precision,
            )
        )
    ultra = _find(record, "ultralytics", precision="fp32")
    for label, precision, target in (
        ("edged_fp32_vs_ultralytics_fp32_fps", "fp32", TARGET_FP32_VS_ULTRALYTICS),
        ("edged_static_vs_ultralytics_fp32_fps", "int8-static", TARGET_STATIC_VS_ULTRALYTICS),
    ):
        # Same model for FP32; for static, its FP32 source is the Ultralytics one (any FP32).
        model = ultra["model"] if ultra and precision == "fp32" else None
        edged = _find(record, "edged", precision=precision, mode="lossless", model=model)
        ratio = _ratio(edged, ultra)
        checks.append(
            _check(
                label,
                f">= {target}",
                ratio,
                None if ratio is None else ratio >= target,
                edged_fps=edged and edged["fps"],
                ultralytics_fps=ultra and ultra["fps"],
                edged_model=edged and edged["model"],
                ultralytics_model=ultra and ultra["model"],
            )
        )
    scenarios = record.get("decode_nms", {}).get("scenarios", {})
    micro, raw = scenarios.get("typical"), scenarios.get("typical (raw head)")
    for label, value in (
        ("decode_nms_p99_ms[typical: 8400 anchors]", micro and micro["p99"]),
        ("decode_nms_cpu_p99_ms[typical: 8400 anchors]", micro and micro["cpu_ms"]["p99"]),
        ("decode_nms_p99_ms[typical: raw head]", raw and raw["p99"]),
        ("decode_nms_cpu_p99_ms[typical: raw head]", raw and raw["cpu_ms"]["p99"]),
    ):
        checks.append(
            _check(
                label,
                f"<= {TARGET_DECODE_NMS_P99_MS}",
                value,
                None if value is None else value <= TARGET_DECODE_NMS_P99_MS,
                candidates=micro and micro["candidates"],
            )
        )
    return checks


def option_checks(
    record: dict[str, Any], name: str, inference: dict | None, peer: dict | None
) -> list[dict]:
    """Each ``--edged-options`` set's lossless run of model ``name`` against inference only
    and Ultralytics on the same file (the unnamed checks above take the first edged run)."""
    checks = []
    for run in record["results"]:
        if (run["model"], run["contender"], run.get("mode"), run.get("status")) != (
            name, "edged", "lossless", "ok") or not run.get("options"):  # fmt: skip
            continue
        for label, other, target in (
            ("edged_vs_inference_fps", inference, TARGET_EDGED_VS_INFERENCE),
            ("edged_vs_ultralytics_same_model_fps", peer, TARGET_SAME_MODEL_VS_ULTRALYTICS),
        ):
            ratio = _ratio(run, other)
            passed = None if ratio is None else ratio >= target
            inputs = {"edged_fps": run["fps"], "other_fps": other and other["fps"]}
            checks.append(_check(f"{label}[{name} {run['options']}]", f">= {target}", ratio,
                                 passed, **inputs))  # fmt: skip
    return checks


def camera_checks(record: dict[str, Any], name: str, inference: dict | None) -> list[dict]:
    """Issue 18's targets for the N-camera run of model ``name`` (none without that run)."""
    run = _find(record, "edged", model=name, mode="cameras")
    if run is None:
        return []
    n = run["camera_count"]
    total = run["total_fps"]
    ratio = total / inference["fps"] if inference and inference.get("fps") else None
    spread = run["fps_spread"]
    # Latency where inference has room (saturated, a frame waits for the other cameras').
    paced = _find(record, "edged", model=name, mode="cameras-paced")
    added = None if paced is None else paced["added_ms"]["p50"]
    # Memory per camera: the N-camera daemon's PSS against the one-camera daemon's.
    single = _find(record, "edged", model=name, mode="lossless")
    pss = (run.get("pss_mb"), single and single.get("pss_mb"))
    per_camera = None if None in pss or n < 2 else (pss[0] - pss[1]) / (n - 1)
    return [
        _check(f"cameras_total_vs_inference_fps[{name}, {n} cameras]",
               f">= {TARGET_CAMERAS_VS_INFERENCE}", ratio,
               None if ratio is None else ratio >= TARGET_CAMERAS_VS_INFERENCE,
               total_fps=total, inference_fps=inference and inference["fps"]),
        _check(f"cameras_fps_spread[{name}, {n} cameras]", f"<= {TARGET_CAMERA_FPS_SPREAD}",
               spread, None if spread is None else spread <= TARGET_CAMERA_FPS_SPREAD,
               fps={c: v["fps"] for c, v in run["cameras"].items()}),
        _check(f"cameras_added_latency_p50_ms[{name}, {n} cameras]",
               f"<= {TARGET_ADDED_P50_MS}", added,
               None if added is None else added <= TARGET_ADDED_P50_MS,
               mode="cameras-paced", total_fps=paced and paced["total_fps"]),
        _check(f"cameras_pss_mb_per_extra_camera[{name}, {n} cameras]",
               f"<= {TARGET_PSS_PER_EXTRA_CAMERA_MB}", per_camera,
               None if per_camera is None else per_camera <= TARGET_PSS_PER_EXTRA_CAMERA_MB,
               pss_mb=pss[0], single_camera_pss_mb=pss[1]),
    ]  # fmt: skip


def kill_checks(record: dict[str, Any], name: str) -> list[dict]:
    """Issue 18's "one camera's stream killed" targets for the cameras-kill run of ``name``:
    each other camera's FPS while it is down moves < 10 % (the largest change of one of
    them), and it reconnected once its server was back (value: seconds to its first frame)."""
    run = _find(record, "edged", model=name, mode="cameras-kill")
    if run is None:
        return []
    n, change = run["cameras_config"], run["others_fps_change"]
    killed = run["killed"]
    # Unpaced (the inference-only run failed), the others' speed-up is by construction.
    unpaced = {} if run.get("paced", True) else {"reason": UNPACED}
    if unpaced:
        change = None
    return [
        _check(f"camera_kill_others_fps_change[{name}, {n} cameras]",
               f"< {TARGET_KILL_OTHERS_FPS_CHANGE}", change,
               None if change is None else change < TARGET_KILL_OTHERS_FPS_CHANGE,
               during_vs_before=run["others_during_vs_before"],
               total_during_vs_before=run["others_total_during_vs_before"],
               fps_limit=run["fps_limit"], **unpaced),
        _check(f"camera_kill_reconnected[{name}, {killed}]", "yes", run["reconnect_s"],
               run["reconnected"], reconnect_s=run["reconnect_s"]),
    ]  # fmt: skip
