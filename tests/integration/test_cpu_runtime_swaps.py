"""Hot swaps between backends through the real daemon: ORT FP32 → OpenVINO INT8 → NCNN →
ORT static, lossless, every frame once and each message naming the variant that made it; and
OpenVINO and ONNX Runtime with two frames in flight (``requests: 2``), alone and swapped in and
out."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.daemon import VIDEO, VIDEO_FRAMES, Collector, Daemon, poll_until, require

pytestmark = pytest.mark.integration

TWO_IN_FLIGHT = "openvino-int8-2req"
ORT_TWO_IN_FLIGHT = "fp32-2req"


def _with_two_in_flight(tmp_path: Path, dir_: Path) -> Path:
    """The runtime manifest plus the OpenVINO INT8 IR with two infer requests in flight and
    the ORT FP32 model with two sessions (the paths made absolute: a manifest's relative paths
    are read beside it)."""
    manifest = yaml.safe_load((dir_ / "yolov5n.yaml").read_text())
    for spec in manifest["variants"].values():
        spec["path"] = str(dir_ / spec["path"])
    for name, base in ((TWO_IN_FLIGHT, "openvino-int8"), (ORT_TWO_IN_FLIGHT, "fp32")):
        manifest["variants"][name] = {**manifest["variants"][base], "options": {"requests": 2}}
    path = tmp_path / "yolov5n.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def _swap_chain(tmp_path: Path, manifest: Path, models_dir: Path, chain: list[str]) -> None:
    """Serve fp32, swap through ``chain`` under a looping lossless source: however long each
    swap takes on this machine, frames keep coming, and every one of them must be published
    exactly once, in order, each by the variant serving at its seq."""
    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--loop", "--mode", "lossless",
                "--wait-subscribers", "1", "--manifest", str(manifest),
                "--models-dir", str(models_dir), "--variant", "fp32") as daemon:  # fmt: skip
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
        log = daemon.log_text()
    # What the inference stage really ran at once with two requests (a backend that silently
    # ran one frame at a time would lose nothing, only speed).
    for generation, variant in enumerate(chain, start=1):
        if variant in (TWO_IN_FLIGHT, ORT_TWO_IN_FLIGHT):
            assert f"/{variant}/{generation}: 2 frame(s) in flight" in log, log[-3000:]
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(len(seqs))), "lost or repeated frames"
    boundaries = [(0, "fp32"), *((seq, variant) for variant, seq in replies)]
    for (start, variant), (end, _) in zip(boundaries, [*boundaries[1:], (len(seqs), "")],
                                          strict=True):  # fmt: skip
        assert end - start >= 20, f"{variant} served {end - start} frames: {replies}"
        served = {m["model"]["variant"] for m in messages[start:end]}
        assert served == {variant}, (start, end, served)
    backends = {m["model"]["variant"]: m["model"]["backend"] for m in messages}
    for variant in chain:
        expected = variant.split("-")[0] if variant.startswith(("openvino", "ncnn")) else None
        assert backends[variant] == (expected or "onnxruntime"), backends
    assert scrape.value("edged_model_swaps_total", result="ok") == len(chain)


def test_swaps_across_backends_lose_nothing(tmp_path: Path, runtime_variant_dir: Path):
    dir_ = runtime_variant_dir
    manifest = (dir_ / "yolov5n.yaml").read_text()
    chain = ["openvino-int8", "ncnn", "static"] if "ncnn:" in manifest else [
        "openvino-int8", "openvino-fp32", "static"]  # fmt: skip
    _swap_chain(tmp_path, dir_ / "yolov5n.yaml", dir_, chain)


def test_swaps_in_and_out_of_two_frames_in_flight_lose_nothing(
    tmp_path: Path, runtime_variant_dir: Path
):
    """ORT → OpenVINO with two requests in flight → ORT with two sessions → ORT: the frames in
    flight at each switch are the old model's, finished and published before the new model's
    first."""
    manifest = _with_two_in_flight(tmp_path, runtime_variant_dir)
    chain = [TWO_IN_FLIGHT, ORT_TWO_IN_FLIGHT, "static"]
    _swap_chain(tmp_path, manifest, runtime_variant_dir, chain)


@pytest.mark.parametrize(("variant", "logged"), [
    (TWO_IN_FLIGHT, "2 request(s) in flight (throughput hint)"),
    (ORT_TWO_IN_FLIGHT, "2 ONNX Runtime sessions in flight, 1 threads each"),
])  # fmt: skip
def test_two_frames_in_flight_publish_every_frame_once_in_order(
    tmp_path: Path, runtime_variant_dir: Path, variant: str, logged: str
):
    manifest = _with_two_in_flight(tmp_path, runtime_variant_dir)
    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--mode", "lossless",
                "--wait-subscribers", "1", "--manifest", str(manifest),
                "--models-dir", str(runtime_variant_dir), "--variant", variant,
                "--threads", "2") as daemon:  # fmt: skip
        collector = Collector(daemon)
        collector.start()
        try:
            poll_until(lambda: len(collector.messages) >= VIDEO_FRAMES or not daemon.running,
                       300, daemon.log_tail)  # fmt: skip
            daemon.wait_published(VIDEO_FRAMES)
        finally:
            messages = collector.stop()
        # Counters travel every stats interval: wait for the inference stage's last ones.
        scrape = daemon.wait_metric("edged_frames_total", lambda v: v >= VIDEO_FRAMES,
                                    stage="infer", outcome="ok")  # fmt: skip
        assert daemon.stop() == 0
        log = daemon.log_text()
    assert logged in log, log[-3000:]
    assert f"/{variant}/0: 2 frame(s) in flight" in log, log[-3000:]  # the stage's capacity
    assert [m["seq"] for m in messages] == list(range(VIDEO_FRAMES))
    assert {m["model"]["variant"] for m in messages} == {variant}
    assert scrape.total("edged_frames_total", stage="infer", outcome="ok") == VIDEO_FRAMES
