"""Measure tracking through the real daemon (``edged tracking mot`` and ``edged tracking count``).

Each run starts ``edged run`` on a video file (lossless, exit at its end) with tracking on,
subscribes to its detections and events over ZeroMQ, and scores what came out: MOTA, IDF1 and
ID switches with ``motmetrics`` (the ``mot`` extra) against a constructed sequence's ground
truth, or the line crossings counted on any video.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml
import zmq

from edged.publish.schema import decode_payload


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_daemon(
    video: Path, tracking: dict[str, Any], model_args: list[str], workdir: Path,
    timeout_s: float = 1800,
) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
    """Every (topic, message) the daemon publishes for ``video``, in order."""
    config = workdir / "edged.yaml"
    config.write_text(yaml.safe_dump({"tracking": tracking}, sort_keys=False))
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)  # keep everything: the run is lossless end to end
    sub.setsockopt(zmq.LINGER, 0)
    for topic in (b"detections.", b"events."):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    argv = [sys.executable, "-m", "edged.cli", "run", "--config", str(config),
            "--source", str(video), "--mode", "lossless", "--exit-at-end",
            "--wait-subscribers", "1", "--publish", endpoint, "--http-port", "0",
            "--runtime-dir", str(workdir / "run"), "--log-level", "WARNING",
            *model_args]  # fmt: skip
    got: list[tuple[str, dict[str, Any]]] = []
    with (workdir / "daemon.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if sub.poll(500):
                    topic, payload = sub.recv_multipart()
                    got.append((topic.decode(), decode_payload(payload)))
                elif proc.poll() is not None:
                    break  # exited, and nothing more is queued
            proc.wait(timeout_s)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
            sub.close()
    if proc.returncode != 0:
        tail = (workdir / "daemon.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"edged run exited {proc.returncode}:\n{tail}")
    return got


def crossings(got: list[tuple[str, dict[str, Any]]]) -> Counter[tuple[str, str]]:
    """(line, direction) -> count, from the events."""
    return Counter(
        (m["line"], m["direction"]) for t, m in got if t.startswith("events.")
        and m["type"] == "line_cross"
    )  # fmt: skip


def iou_distances(gt: list[list[float]], hyp: list[list[float]], max_distance: float) -> np.ndarray:
    """1 - IoU of x, y, w, h boxes, NaN (no match) beyond ``max_distance``: what motmetrics'
    ``distances.iou_matrix`` computes, which its 1.4.0 release cannot run on NumPy 2
    (``np.asfarray``)."""
    if not gt or not hyp:
        return np.empty((len(gt), len(hyp)))
    a, b = np.asarray(gt, np.float64)[:, None, :], np.asarray(hyp, np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
                 - np.maximum(a[..., 0], b[..., 0]), 0, None)  # fmt: skip
    ih = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
                 - np.maximum(a[..., 1], b[..., 1]), 0, None)  # fmt: skip
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    dist = 1 - inter / np.maximum(union, 1e-9)
    return np.where(dist > max_distance, np.nan, dist)


def mot_scores(got: list[tuple[str, dict[str, Any]]], truth: dict[int, list]) -> dict[str, Any]:
    """MOTA, IDF1, ID switches ... of the published tracks against ``truth`` (frame -> boxes)."""
    import motmetrics as mm  # the `mot` extra: not a daemon dependency

    acc = mm.MOTAccumulator(auto_id=False)
    frames = {m["seq"]: m for t, m in got if t.startswith("detections.")}
    for seq, objects in truth.items():
        message = frames.get(seq, {"detections": []})
        tracked = [d for d in message["detections"] if d.get("track_id") is not None]
        gt = [[x1, y1, x2 - x1, y2 - y1] for _, (x1, y1, x2, y2) in objects]
        hyp = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in (d["box"] for d in tracked)]
        dist = iou_distances(gt, hyp, max_distance=0.5)
        acc.update([i for i, _ in objects], [d["track_id"] for d in tracked], dist, frameid=seq)
    names = ["mota", "motp", "idf1", "num_switches", "num_false_positives", "num_misses",
             "num_objects", "mostly_tracked", "num_unique_objects",
             "num_fragmentations"]  # fmt: skip
    summary = mm.metrics.create().compute(acc, metrics=names, name="edged")
    return {k: float(summary[k].iloc[0]) for k in names}


def named(counts: Counter[tuple[str, str]]) -> dict[str, int]:
    return {f"{line} {direction}": n for (line, direction), n in sorted(counts.items())}


def mot(coco: Path, model_args: list[str], frames: int = 240, keep: Path | None = None) -> dict:
    """Build the constructed sequence, run it through the daemon, score it."""
    from edged.tracking import scene

    names = yaml.safe_load((coco / "data.yaml").read_text())["names"]
    with tempfile.TemporaryDirectory(prefix="edged-mot-") as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cast = scene.actors(scene.crops(coco, names, {"person": 4, "dog": 1, "car": 1}, 140))
        video = work / "scene.mp4"
        scene.render(scene.background(coco), cast, video, frames)
        (a, b) = scene.LINE
        tracking = {"enabled": True, "lines": [{"name": "middle", "points": [list(a), list(b)]}]}
        got = run_daemon(video, tracking, model_args, work)
        if keep is not None:
            (work / "published.json").write_text(json.dumps(got))
    truth_crossings = Counter(("middle", d) for _, d in scene.true_crossings(cast, frames))
    return {
        "frames": frames,
        "actors": [(a.gt_id, a.label) for a in cast],
        "published_frames": sum(1 for t, _ in got if t.startswith("detections.")),
        **mot_scores(got, scene.ground_truth(cast, frames)),
        "crossings": named(crossings(got)),
        "true_crossings": named(truth_crossings),
    }
