"""Hot swaps between backends through the real daemon: ORT FP32 → OpenVINO INT8 → NCNN →
ORT static, lossless, every frame once and each message naming the variant that made it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon import VIDEO, Collector, Daemon, poll_until, require

pytestmark = pytest.mark.integration


def test_swaps_across_backends_lose_nothing(tmp_path: Path, runtime_variant_dir: Path):
    dir_ = runtime_variant_dir
    manifest = (dir_ / "yolov5n.yaml").read_text()
    chain = ["openvino-int8", "ncnn", "static"] if "ncnn:" in manifest else [
        "openvino-int8", "openvino-fp32", "static"]  # fmt: skip
    # A looping source in lossless mode: however long each swap takes on this machine, frames
    # keep coming, and every one of them must be published exactly once.
    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--loop", "--mode", "lossless",
                "--wait-subscribers", "1", "--manifest", str(dir_ / "yolov5n.yaml"),
                "--models-dir", str(dir_), "--variant", "fp32") as daemon:  # fmt: skip
        collector = Collector(daemon)
        collector.start()
        try:
            poll_until(lambda: len(collector.messages) >= 20, 120, daemon.log_tail)
            replies = []
            for variant in chain:
                reply = daemon.ctl("swap", variant, timeout=180)
                assert reply["ok"], reply
                replies.append((variant, reply["first_seq"]))
                seen = len(collector.messages)
                poll_until(lambda seen=seen: len(collector.messages) >= seen + 20, 120,
                           daemon.log_tail)  # fmt: skip
        finally:
            messages = collector.stop()
        scrape = daemon.metrics()
        assert daemon.stop() == 0
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(len(seqs))), "lost or repeated frames"
    boundaries = [(0, "fp32"), *((seq, variant) for variant, seq in replies)]
    for (start, variant), (end, _) in zip(boundaries, [*boundaries[1:], (len(seqs), "")],
                                          strict=True):  # fmt: skip
        assert end - start >= 20, f"{variant} served {end - start} frames: {replies}"
        served = {m["model"]["variant"] for m in messages[start:end]}
        assert served == {variant}, (start, end, served)
    backends = {m["model"]["variant"]: m["model"]["backend"] for m in messages}
    assert backends["openvino-int8"] == "openvino"
    assert backends["static"] == backends["fp32"] == "onnxruntime"
    if "ncnn" in backends:
        assert backends["ncnn"] == "ncnn"
    assert scrape.value("edged_model_swaps_total", result="ok") == len(chain)
