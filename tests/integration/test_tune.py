"""`edged tune` end to end: real daemons measured, real evaluations, the cache on a rerun, and
--apply against a real running daemon. Light on purpose (a few frames, two images): nothing
here asserts a speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.daemon import REPO_ROOT, VIDEO, Daemon, poll_until, require
from tests.paths import SHARED_DATA

COCO_VAL = SHARED_DATA / "coco-val2017-100" / "data.yaml"
LIGHT = ["--frames", "4", "--warmup", "2", "--threads", "1", "--max-images", "2", "--no-progress"]


def tune(tmp_path: Path, variant_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "edged.cli", "tune", "--manifest", "yolov5n",
            "--models-dir", str(variant_dir), "--source", str(require(VIDEO)),
            "--data", str(require(COCO_VAL)), "--cache-dir", str(tmp_path / "cache"),
            *LIGHT, *args]  # fmt: skip
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)


def test_tune_measures_every_variant_picks_one_and_resumes_from_the_cache(
    tmp_path: Path, variant_dir: Path
):
    out = tmp_path / "report"
    args = ("--variant", "static", "--variant", "dynamic", "--variant", "missing",
            "--budget", "100", "-o", str(out))  # fmt: skip
    first = tune(tmp_path, variant_dir, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    record = json.loads((out / "tune.json").read_text())
    variants = {v["name"]: v for v in record["variants"]}
    assert list(variants) == ["fp32", "static", "dynamic", "missing"]  # the reference first
    missing = variants.pop("missing")  # not a standard variant: skipped, saying why
    assert "does not exist" in missing["skipped"] and "how to make" in missing["skipped"]
    assert missing["speed"] is None
    for v in variants.values():
        assert v["speed"]["status"] == "ok", v["speed"]
        assert v["speed"]["frames"] == 4 and v["speed"]["fps"] > 0
        assert v["speed"]["precision"] == v["precision"]  # the daemon ran this very variant
        assert v["accuracy"]["metrics"]["num_images"] == 2
        assert v["cached"] == []
    # With a 100-point budget every variant is eligible: the pick is the fastest one.
    top = max(v["speed"]["fps"] for v in variants.values())
    fastest = record["choice"]["variant"]
    assert variants[fastest]["speed"]["fps"] == top  # (equal FPS: any of them, by the tie rules)
    assert f"choice: {fastest}" in first.stdout
    markdown = (out / "tune.md").read_text()
    assert f"**Choice: `{fastest}`**" in markdown and "| static |" in markdown.replace(" ✓", "")
    assert (out / "report.md").is_file() and (out / "tune_speed_accuracy.png").is_file()

    again = tune(tmp_path, variant_dir, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    rerun = json.loads((out / "tune.json").read_text())
    measured = [v for v in rerun["variants"] if v["speed"]]
    assert all(v["cached"] == ["speed", "accuracy"] for v in measured), rerun
    assert rerun["choice"] == record["choice"]


def test_apply_edits_only_model_variant_and_swaps_the_running_daemon(
    tmp_path: Path, variant_dir: Path
):
    runtime_dir = tmp_path / "daemon" / "run"
    config = {
        "source": {"uri": str(require(VIDEO)), "loop": True},
        "model": {"manifest": "yolov5n", "models_dir": str(variant_dir), "variant": "fp32"},
        "runtime": {"runtime_dir": str(runtime_dir)},
    }
    with Daemon(tmp_path / "daemon", config=config) as daemon:
        daemon.wait_ready()
        assert daemon.config_path is not None
        before = daemon.config_path.read_text()
        # Only static is tuned (as its own reference): the pick is static, whatever the speeds.
        result = tune(tmp_path, variant_dir, "--reference", "static", "--variant", "static",
                      "-o", str(tmp_path / "r"), "--apply", "--config",
                      str(daemon.config_path))  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr + daemon.log_tail()
        assert "choice: static" in result.stdout
        after = daemon.config_path.read_text()
        changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True)
                   if a != b]  # fmt: skip
        assert changed == [("  variant: fp32", "  variant: static")]
        assert yaml.safe_load(after)["model"]["variant"] == "static"
        assert "swap: {" in result.stdout and "'ok': True" in result.stdout
        poll_until(lambda: daemon.ctl("status")["model"]["variant"] == "static", 60,
                   daemon.log_tail)  # fmt: skip
        assert daemon.stop() == 0
