"""The CLI contract: register_commands wiring, exit codes, files written, clear errors."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from edged.tools import register_commands
from edged.tools.presets import RECOMMENDED_STATIC
from tests.tools.models import tiny_dataset, tiny_yolov8


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edged")
    register_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_every_subcommand_sets_a_handler() -> None:
    for argv in (
        ["export", "yolov8n.pt"],
        ["quantize", "static", "m.onnx", "--calib", "imgs"],
        ["quantize", "dynamic", "m.onnx"],
        ["eval", "a.onnx", "b.onnx", "--data", "data.yaml"],
        ["bench", "a.onnx", "--cpus", "0-1,3"],
        ["report", "results/"],
    ):
        assert callable(_parse(*argv).func), argv


def test_defaults_follow_the_recommended_preset_and_conventions() -> None:
    s = _parse("quantize", "static", "m.onnx", "--calib", "imgs")
    assert (s.method, s.num_images, s.head_levels) == (
        RECOMMENDED_STATIC.method, RECOMMENDED_STATIC.num_images, RECOMMENDED_STATIC.head_levels,
    )  # fmt: skip
    assert s.per_channel and s.head_float and s.preprocess
    e = _parse("eval", "m.onnx", "--data", "d.yaml")
    assert (e.conf, e.iou, e.max_det, e.multi_label) == (0.001, 0.6, 300, True)
    assert _parse("bench", "m.onnx", "--cpus", "0-1,3").cpus == (0, 1, 3)
    with pytest.raises(SystemExit):
        _parse("quantize")  # static or dynamic is required


def test_eval_bench_report_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = tiny_yolov8(tmp_path / "tiny.onnx")
    data = tiny_dataset(tmp_path / "data")
    out = tmp_path / "results"
    argv = ["eval", str(model), "--data", str(data), "--no-progress",
            "--json", str(out / "eval.json"), "--csv", str(out / "eval.csv")]  # fmt: skip
    args = _parse(*argv)
    assert args.func(args) == 0
    args = _parse("bench", str(model), "--runs", "3", "--warmup", "1", "--no-isolate",
                  "--json", str(out / "bench.json"), "--csv", str(out / "bench.csv"))  # fmt: skip
    assert args.func(args) == 0
    assert "edged eval" in capsys.readouterr().out
    evaluated = json.loads((out / "eval.json").read_text())
    assert evaluated[0]["kind"] == "edged.eval" and evaluated[0]["metrics"]["num_images"] == 3
    args = _parse("report", str(out), "-o", str(tmp_path / "report"))
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(printed["report"]).is_file() and len(printed["plots"]) == 4


def test_user_errors_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _parse("eval", str(tmp_path / "nope.onnx"), "--data", str(tiny_dataset(tmp_path)))
    assert args.func(args) == 2
    assert "edged eval: " in capsys.readouterr().err
    args = _parse("quantize", "dynamic", str(tmp_path / "nope.onnx"))
    assert args.func(args) == 2
    assert "no such model file" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # as if the extra were missing
    args = _parse("export", "yolov8n.pt")
    assert args.func(args) == 2
    assert "pip install 'edged[export]'" in capsys.readouterr().err


EVAL = ("eval", "m.onnx", "--data", "d")
STATIC = ("quantize", "static", "m.onnx", "--calib", "c")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((*EVAL, "--conf", "2"), "--conf: 2 is out of range (must be in [0, 1])"),
        ((*EVAL, "--iou", "-1"), "--iou: -1 is out of range"),
        ((*EVAL, "--max-images", "0"), "--max-images: 0 is out of range (must be ≥ 1)"),
        (("bench", "m.onnx", "--rounds", "0"), "--rounds: 0 is out of range (must be ≥ 1)"),
        (("bench", "m.onnx", "--threads", "0"), "--threads: 0 is out of range"),
        (("bench", "m.onnx", "--runs", "2.5"), "--runs: '2.5' is not a whole number"),
        ((*STATIC, "--percentile", "150"), "--percentile: 150 is out of range (must be in [50,"),
        ((*STATIC, "--head-levels", "-1"), "--head-levels: -1 is out of range"),
        ((*STATIC, "--chunk", "0"), "--chunk: 0 is out of range"),
    ],
)  # fmt: skip
def test_numbers_out_of_range_are_refused_naming_the_option(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parse(*argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
