"""``edged bench pipeline --cameras N``: the daemon serving N file cameras with one model.

Every camera reads the same video, looped and paced as a camera delivers frames
(``realtime``: latest frame wins, drops counted). Two runs: ``cameras``, each camera at the
file's rate, so N cameras ask more than one inference stage gives (throughput against the
single-camera inference-only FPS, and each camera's share: no camera starves another); and
``cameras-paced``, all cameras together at a third of the inference limit and out of phase,
where a frame seldom waits for another camera's (the latency edged adds to inference). Per
camera and in all: published FPS, skipped frames, latency.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from edged.tools.pipeline_bench.measure import percentile_summary

CAMERAS_MODE = "cameras"  # saturated: throughput and fairness
CAMERAS_PACED_MODE = "cameras-paced"  # together at half the inference limit: added latency
CAMERA_MODES = (CAMERAS_MODE, CAMERAS_PACED_MODE)


def camera_ids(count: int) -> list[str]:
    return [f"cam{i}" for i in range(count)]


PHASE_DRIFT = 0.07  # camera i runs at fps × (1 + i × this): see cameras_section


def cameras_section(source: dict[str, Any], count: int, fps: float | None,
                    drift: bool = False) -> list[dict]:  # fmt: skip
    """The config's ``cameras:``: ``count`` copies of ``source``, looped and camera-paced.

    ``drift``: each camera a few percent faster than the one before. Copies of one file
    started together at one rate deliver their frames at the same instants, for ever, so
    every frame would wait for the other cameras' inferences; real cameras are not locked in
    phase, and slightly different rates let the phases drift through every offset."""
    cameras = []
    for index, camera_id in enumerate(camera_ids(count)):
        camera_source = {**source, "mode": "realtime", "loop": True}
        if fps:
            rate = fps * (1 + index * PHASE_DRIFT) if drift else fps
            camera_source["fps"] = round(float(rate), 3)
        cameras.append({"id": camera_id, "source": camera_source})
    return cameras


def per_camera(counted: list[dict[str, Any]], times: list[float],
               expected: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Each camera's frames, FPS over the common window, skipped frames and latency; the
    spread of the FPS around their mean (fairness) and the total. ``expected``: the cameras
    configured, so one that published nothing counts (at 0 FPS) instead of vanishing."""
    by_camera: dict[str, list[dict[str, Any]]] = {c: [] for c in expected or ()}
    for message in counted:
        by_camera.setdefault(str(message["camera_id"]), []).append(message)
    window_s = max(times[-1] - times[0], 1e-9)
    cameras: dict[str, Any] = {}
    for camera_id, messages in sorted(by_camera.items()):
        if not messages:  # starved: the worst unfairness there is
            cameras[camera_id] = {"frames": 0, "fps": 0.0, "skipped_frames": None,
                                  "e2e_ms": None, "added_ms": None}  # fmt: skip
            continue
        seqs = [m["seq"] for m in messages]
        latency = [m["latency_ms"] for m in messages]
        cameras[camera_id] = {
            "frames": len(messages),
            "fps": round(len(messages) / window_s, 2),
            "skipped_frames": (max(seqs) - min(seqs) + 1) - len(set(seqs)),
            "e2e_ms": percentile_summary([x["end_to_end"] for x in latency]),
            "added_ms": percentile_summary([x["end_to_end"] - x["infer"] for x in latency]),
        }
    rates = [c["fps"] for c in cameras.values()]
    mean = fmean(rates) if rates else 0.0
    spread = max((abs(r - mean) / mean for r in rates), default=0.0) if mean else None
    return {
        "cameras": cameras,
        "camera_count": len(cameras),
        "total_fps": round(sum(rates), 2),
        "fps_spread": None if spread is None else round(spread, 4),
    }
