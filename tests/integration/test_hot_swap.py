"""Hot swap through the real daemon: nothing lost, every message names the variant that made it."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import yaml
import zmq

from tests.daemon import VIDEO, Collector, Daemon, poll_until, require

pytestmark = pytest.mark.integration

SERVED = 90  # frames each variant publishes before the next swap


def manifest_args(variant_dir: Path, variant: str = "fp32") -> list[str]:
    return ["--manifest", str(variant_dir / "yolov5n.yaml"), "--models-dir", str(variant_dir),
            "--variant", variant]  # fmt: skip


def test_swaps_while_lossless_lose_nothing(tmp_path: Path, variant_dir: Path):
    """Three swaps in a lossless run: every frame published once, in order, and each names the
    variant that made it. The video loops, so however long a swap takes (a cold ONNX Runtime
    cache makes it seconds), frames keep coming for the next one: nothing here depends on how
    many frames are left when a swap ends."""
    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--mode", "lossless", "--loop",
                "--wait-subscribers", "1", *manifest_args(variant_dir)) as daemon:  # fmt: skip
        collector = Collector(daemon)
        collector.start()
        try:
            poll_until(lambda: collector.newest_seq() >= 40, 90, daemon.log_tail)
            replies = []
            for variant in ("static", "dynamic", "fp32"):
                reply = daemon.ctl("swap", variant, timeout=120)
                assert reply["ok"], reply
                assert reply["active"] == variant
                replies.append((variant, reply["first_seq"]))
                # A stretch of frames served by this variant before the next swap.
                until = reply["first_seq"] + SERVED
                poll_until(lambda until=until: collector.newest_seq() >= until, 120,
                           daemon.log_tail)  # fmt: skip
        finally:
            messages = collector.stop()
        assert daemon.stop() == 0
    assert [m["seq"] for m in messages] == list(range(len(messages))), "lost or repeated frames"
    # The variant that produced each frame: fp32 until the first swap's first_seq, and so on.
    expected = {}
    boundaries = [(0, "fp32"), *((seq, variant) for variant, seq in replies)]
    for (start, variant), (end, _) in zip(boundaries, [*boundaries[1:], (len(messages), "")],
                                          strict=True):  # fmt: skip
        assert start < end, f"swaps out of order: {replies}"
        expected.update(dict.fromkeys(range(start, end), variant))
    got = {m["seq"]: m["model"]["variant"] for m in messages}
    assert got == expected
    precisions = {m["model"]["variant"]: m["model"]["precision"] for m in messages}
    assert precisions == {"fp32": "fp32", "static": "int8-static", "dynamic": "int8-dynamic"}
    # Each variant served a real stretch of the video. (Whether it detects anything there
    # depends on which frames it got — the video is sparse early on — so accuracy is left to
    # the tools' tests.)
    for variant in ("fp32", "static", "dynamic"):
        served = [m for m in messages if m["model"]["variant"] == variant]
        assert len(served) >= SERVED, variant


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("truncated", "cannot load"),
        ("missing", "does not exist"),
        ("escape", "outside the model directory"),
        ("symlink", "outside the model directory"),
        ("../../etc/passwd", "no variant"),
    ],
)
def test_bad_swaps_are_refused_and_frames_keep_flowing(tmp_path, variant_dir, variant, reason):
    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--loop",
                *manifest_args(variant_dir)) as daemon:  # fmt: skip
        daemon.wait_ready()
        reply = daemon.ctl("swap", variant)
        assert not reply["ok"]
        assert reason in reply["error"], reply
        assert reply["active"] == "fp32"
        before = daemon.ctl("status")["frames_published"]
        poll_until(lambda: daemon.ctl("status")["frames_published"] > before + 5, 30,
                   daemon.log_tail)  # fmt: skip
        status = daemon.ctl("status")
        assert status["model"]["variant"] == "fp32"
        scrape = daemon.metrics()
        assert scrape.value("edged_model_swaps_total", result="refused") == 1
        active = [s.labels for s in scrape.samples("edged_model_info") if s.value == 1]
        assert active == [{"name": "yolov5n", "variant": "fp32", "backend": "onnxruntime",
                           "precision": "fp32"}]  # fmt: skip
        assert daemon.stop() == 0


def test_sighup_reloads_a_valid_config_and_refuses_an_invalid_one(tmp_path, variant_dir):
    config = {
        "source": {"uri": str(require(VIDEO)), "loop": True},
        "model": {"manifest": str(variant_dir / "yolov5n.yaml"), "variant": "fp32",
                  "models_dir": str(variant_dir)},
    }  # fmt: skip
    with Daemon(tmp_path, config=config) as daemon:
        daemon.wait_ready()
        config["model"]["variant"] = "static"
        daemon.config_path.write_text(yaml.safe_dump(config))
        daemon.proc.send_signal(signal.SIGHUP)
        poll_until(lambda: daemon.ctl("status")["model"]["variant"] == "static", 60,
                   daemon.log_tail)  # fmt: skip
        daemon.config_path.write_text("model:\n  variant: dynamic\n  colour: blue\n")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for_log("reload refused")
        assert "model.colour" in daemon.log_text()
        status = daemon.ctl("status")
        assert status["model"]["variant"] == "static"
        before = status["frames_published"]
        poll_until(lambda: daemon.ctl("status")["frames_published"] > before, 30, daemon.log_tail)
        reply = daemon.ctl("reload")  # the same over the control socket: refused with reasons
        assert not reply["ok"] and "model.colour" in reply["error"]
        # A valid change a running daemon cannot apply: accepted, and the reply says so.
        config["postprocess"] = {"conf_threshold": 0.4}
        daemon.config_path.write_text(yaml.safe_dump(config))
        reply = daemon.ctl("reload")
        # Only what the file changed: the harness's command-line flags (ports, runtime dir)
        # override the file on a reload as they did at start.
        assert reply["ok"] and reply["needs_restart"] == ["postprocess"], reply
        assert reply["changed"] == ["postprocess"]
        assert daemon.stop() == 0


def raw_request(endpoint: str, payload: bytes) -> dict:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(payload)
        assert sock.poll(10_000), "no reply"
        return json.loads(sock.recv())
    finally:
        sock.close()


def test_control_socket_answers_garbage_with_errors(tmp_path: Path):
    with Daemon(tmp_path, "--source", "synthetic:") as daemon:
        daemon.wait_ready()
        ep = daemon.control_endpoint
        mode = (daemon.runtime_dir / "control.sock").stat().st_mode & 0o777
        assert mode == 0o600
        cases = {
            b"{not json": "not valid JSON",
            b"\xff\xfe": "not valid JSON",
            b"[1, 2]": "JSON object",
            b'{"version": 1, "command": "explode"}': "unknown command",
            b'{"version": 2, "command": "status"}': "protocol version",
            b'{"version": 1, "command": "swap"}': "variant",
            b'{"version": 1, "command": "status", "x": 1}': "unknown field",
        }
        for payload, reason in cases.items():
            reply = raw_request(ep, payload)
            assert reply["ok"] is False and reason in reply["error"], (payload, reply)
        assert raw_request(ep, b'{"version": 1, "command": "status"}')["ok"] is True
        time.sleep(0)  # the daemon is still serving
        assert daemon.running
        assert daemon.stop() == 0
