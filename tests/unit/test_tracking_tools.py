"""The tracking measurement tools: bench output, the constructed scene's ground truth, scoring."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edged.tracking import scene
from edged.tracking.measure import crossings, iou_distances
from tests.paths import COCO128, REPO_ROOT, require


def test_bench_command_reports_both_clocks() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edged.cli", "tracking", "bench", "--detections", "20",
         "--frames", "60", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert result["detections"] == 20 and result["frames"] == 60
    assert result["tracks_alive"] > 0
    for clock in ("wall", "cpu"):
        assert (
            0 < result[f"{clock}_p50_ms"] <= result[f"{clock}_p99_ms"] <= result[f"{clock}_max_ms"]
        )


def test_true_crossings_follow_the_paths() -> None:
    crop = np.zeros((40, 20, 3), np.uint8)
    w = scene.W
    across = scene.Actor(1, "person", crop, 0, ((0, 0.1 * w, 100.0), (20, 0.8 * w, 100.0)))
    path = ((0, 0.8 * w, 300.0), (10, 0.6 * w, 300.0), (20, 0.1 * w, 300.0), (30, 0.7 * w, 300.0))
    back = scene.Actor(2, "person", crop, 0, path)
    stays = scene.Actor(3, "person", crop, 0, ((0, 0.1 * w, 200.0), (30, 0.3 * w, 250.0)))
    got = scene.true_crossings([across, back, stays], 31)
    # The middle line is drawn top to bottom: moving right arrives on its left side.
    assert got == [(1, "right_to_left"), (2, "left_to_right"), (2, "right_to_left")]
    truth = scene.ground_truth([across], 21)
    assert truth[0] == [(1, (round(0.1 * w), 100, round(0.1 * w) + 20, 140))]


def test_iou_distances_match_the_definition() -> None:
    d = iou_distances([[0, 0, 10, 10], [100, 100, 10, 10]], [[5, 0, 10, 10], [0, 0, 10, 10]], 0.5)
    assert np.isnan(d[0, 0])  # IoU 1/3: distance 2/3, beyond 0.5
    assert d[0, 1] == pytest.approx(0.0)
    assert np.isnan(d[1]).all()
    assert iou_distances([], [[0, 0, 1, 1]], 0.5).shape == (0, 1)


def test_crossings_are_counted_per_line_and_direction() -> None:
    got = [("events.cam0", {"type": "line_cross", "line": "a", "direction": "left_to_right"}),
           ("events.cam0", {"type": "line_cross", "line": "a", "direction": "left_to_right"}),
           ("events.cam0", {"type": "zone_enter", "zone": "z"}),
           ("detections.cam0", {"seq": 1})]  # fmt: skip
    assert crossings(got) == {("a", "left_to_right"): 2}


def test_the_scene_background_and_crops_come_from_coco128() -> None:
    import yaml

    root = require(COCO128)
    names = yaml.safe_load((root / "data.yaml").read_text())["names"]
    back = scene.background(root)
    assert back.shape == (scene.H, scene.W, 3)
    items = scene.crops(root, names, {"person": 2}, 120)
    assert [label for label, _ in items] == ["person", "person"]
    assert all(crop.shape[0] == 120 for _, crop in items)
