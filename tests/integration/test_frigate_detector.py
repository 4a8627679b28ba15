"""`edged serve-detector` against a client written from Frigate's zmq detector protocol.

The protocol, as the client here speaks it: a REQ socket sends ``[header_json, tensor_bytes]``
(header ``shape``, ``dtype``, ``model_type``) and reads one frame back, a float32 (20, 6) array
of ``[class_id, score, y_min, x_min, y_max, x_max]`` normalised 0-1, zeros for empty rows.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
import zmq

from edged.control import call
from tests.daemon import YOLOV5N, Daemon, require
from tests.fakes.fixtures import fake_env, write_hef
from tests.paths import SHARED_DATA
from tests.systemd_helpers import NotifySocketReceiver

pytestmark = pytest.mark.integration

COCO = SHARED_DATA / "coco-val2017-100"
# A skier: one person (COCO class 0) covering most of the picture, and a pair of skis.
PERSON_IMAGE = "000000000785"
SIDE = 320  # Frigate's default model size


class Detector(Daemon):
    """The real `edged serve-detector` in a subprocess (Daemon's process and log handling)."""

    def __init__(self, tmp_path: Path, *args: str, model: Path | None = YOLOV5N,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(tmp_path, model=None, env=env)
        self.endpoint = f"ipc://{self.runtime_dir}/detector.sock"
        self.control_endpoint = f"ipc://{self.runtime_dir}/detector-control.sock"
        argv = list(args)
        if model is not None:
            argv += ["--model", str(require(model))]
        argv += ["--runtime-dir", str(self.runtime_dir), "--http-host", "127.0.0.1",
                 "--http-port", str(self.http_port), "--log-level", "INFO"]  # fmt: skip
        self.argv = [sys.executable, "-m", "edged.cli", "serve-detector", *argv]

    def client(self) -> zmq.Socket:
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        self._sockets.append(sock)
        return sock

    def outcomes(self) -> dict[str, float]:
        scrape = self.metrics()
        return {o: scrape.value("edged_detector_requests_total", outcome=o)
                for o in ("ok", "late", "expired", "error")}  # fmt: skip


def request(sock: zmq.Socket, parts: list[bytes], timeout_s: float = 60.0) -> np.ndarray:
    """Send one request, return the (20, 6) reply (AssertionError on anything else)."""
    sock.send_multipart(parts)
    assert sock.poll(int(timeout_s * 1000)), "no reply"
    reply = sock.recv_multipart()
    assert len(reply) == 1 and len(reply[0]) == 20 * 6 * 4, [len(p) for p in reply]
    return np.frombuffer(reply[0], np.float32).reshape(20, 6)


def header(shape: list[int], dtype: str, model_type: str = "yolo-generic") -> bytes:
    return json.dumps({"shape": shape, "dtype": dtype, "model_type": model_type}).encode()


def person_image() -> tuple[np.ndarray, np.ndarray]:
    """The picture resized to SIDE×SIDE RGB (as Frigate sends a region), and the person's
    labelled box as normalised [y_min, x_min, y_max, x_max] (resizing keeps those)."""
    image = cv2.imread(str(require(COCO / "images" / "val2017" / f"{PERSON_IMAGE}.jpg")))
    rgb = cv2.cvtColor(cv2.resize(image, (SIDE, SIDE)), cv2.COLOR_BGR2RGB)
    rows = np.loadtxt(COCO / "labels" / "val2017" / f"{PERSON_IMAGE}.txt", ndmin=2)
    _, cx, cy, w, h = rows[rows[:, 0] == 0][0]
    return rgb, np.array([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(
        0.0, min(a[3], b[3]) - max(a[1], b[1])
    )
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return float(inter / (area - inter))


def assert_person(result: np.ndarray, box: np.ndarray) -> None:
    best = result[0]
    assert best[0] == 0, f"best row is class {best[0]}, not person: {result[:3]}"
    assert best[1] > 0.5, result[:3]
    assert iou(best[2:], box) > 0.7, (best, box)
    scores = result[:, 1]
    assert list(scores) == sorted(scores, reverse=True), "rows not best first"
    assert np.all((result[:, 2:] >= 0) & (result[:, 2:] <= 1))


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Detector]:
    folder = tmp_path_factory.mktemp("detector")
    with Detector(folder, "--labelmap-out", str(folder / "labelmap.txt")) as d:
        d.wait_ready(120)
        yield d


def test_answers_a_coco_person(detector: Detector):
    rgb, box = person_image()
    sock = detector.client()
    assert_person(request(sock, [header([1, SIDE, SIDE, 3], "uint8"), rgb.tobytes()]), box)
    # The same picture as Frigate's float input (0-255) in NCHW order: the same answer.
    nchw = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
    assert_person(request(sock, [header([1, 3, SIDE, SIDE], "float32"), nchw.tobytes()]), box)
    # What Frigate's labelmap_path should read: the class ids the replies carry.
    labelmap = (detector.tmp_path / "labelmap.txt").read_text().splitlines()
    assert labelmap[:3] == ["0 person", "1 bicycle", "2 car"] and len(labelmap) == 80


BAD_REQUESTS = {
    "not JSON": [b"{shape", bytes(SIDE * SIDE * 3)],
    "a JSON list": [b"[1, 320, 320, 3]", bytes(SIDE * SIDE * 3)],
    "no shape": [json.dumps({"dtype": "uint8"}).encode(), bytes(SIDE * SIDE * 3)],
    "four channels": [header([1, SIDE, SIDE, 4], "uint8"), bytes(SIDE * SIDE * 4)],
    "batch of two": [header([2, SIDE, SIDE, 3], "uint8"), bytes(2 * SIDE * SIDE * 3)],
    "float64": [header([1, SIDE, SIDE, 3], "float64"), bytes(SIDE * SIDE * 3 * 8)],
    "short tensor": [header([1, SIDE, SIDE, 3], "uint8"), bytes(SIDE * SIDE * 3 - 1)],
    "huge shape": [header([1, 100000, 100000, 3], "uint8"), bytes(10)],
    "negative side": [header([1, -320, 320, 3], "uint8"), bytes(10)],
    "header only": [header([1, SIDE, SIDE, 3], "uint8")],
    "three frames": [header([1, SIDE, SIDE, 3], "uint8"), bytes(SIDE * SIDE * 3), b"x"],
    "model_type not text": [json.dumps({"shape": [1, SIDE, SIDE, 3], "dtype": "uint8",
                                        "model_type": 5}).encode(), bytes(SIDE * SIDE * 3)],
}  # fmt: skip


def test_bad_requests_get_zeros_and_are_counted(detector: Detector):
    before = detector.outcomes()
    sock = detector.client()
    for name, parts in BAD_REQUESTS.items():
        assert not request(sock, parts).any(), name
    after = detector.outcomes()
    assert after["error"] - before["error"] == len(BAD_REQUESTS)
    # Still serving, and NaN in a float tensor is a picture (black there), not an error.
    rgb, box = person_image()
    assert_person(request(sock, [header([1, SIDE, SIDE, 3], "uint8"), rgb.tobytes()]), box)
    noisy = rgb.astype(np.float32)
    noisy[:4] = np.nan
    request(sock, [header([1, SIDE, SIDE, 3], "float32"), noisy.tobytes()])
    assert detector.outcomes()["error"] == after["error"]
    assert detector.running
    assert "refused a request: header is not JSON" in detector.log_text()  # then throttled


def test_timeouts_under_load_are_counted(tmp_path: Path):
    """Four clients at once against a 1 ms timeout: every request is either answered late or,
    when it waited past the timeout before its turn, answered at once with zeros; both kinds
    are counted and every client gets a reply."""
    rgb, _ = person_image()
    parts = [header([1, SIDE, SIDE, 3], "uint8"), rgb.tobytes()]
    with Detector(tmp_path, "--timeout-ms", "1") as detector:
        detector.wait_ready(120)
        clients = [detector.client() for _ in range(4)]
        replies: list[np.ndarray] = []

        def run(sock: zmq.Socket) -> None:
            for _ in range(3):
                replies.append(request(sock, parts))

        threads = [threading.Thread(target=run, args=(sock,)) for sock in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(replies) == 12
        outcomes = detector.outcomes()
        assert outcomes["ok"] == 0 and outcomes["error"] == 0
        assert outcomes["late"] + outcomes["expired"] == 12, outcomes
        scrape = detector.metrics()
        assert scrape.value("edged_detector_request_seconds_count") == 12
        # Only the late ones ran the model.
        assert scrape.value("edged_frames_total", stage="infer", outcome="ok") == outcomes["late"]
        assert detector.stop() == 0


def test_hot_swap_through_edged_ctl(tmp_path: Path, variant_dir: Path):
    rgb, box = person_image()
    parts = [header([1, SIDE, SIDE, 3], "uint8"), rgb.tobytes()]
    models = tmp_path / "models"  # the test manifest and an OpenVINO variant of the same file
    models.mkdir()
    manifest = yaml.safe_load((variant_dir / "yolov5n.yaml").read_text())
    for variant in ("fp32", "dynamic", "truncated"):
        name = manifest["variants"][variant]["path"]
        shutil.copyfile(variant_dir / name, models / name)
    manifest["variants"] = {
        **{v: manifest["variants"][v] for v in ("fp32", "dynamic", "truncated")},
        "openvino": {"backend": "openvino", "path": "yolov5n.onnx", "precision": "fp32"},
    }
    (models / "yolov5n.yaml").write_text(yaml.safe_dump(manifest))
    with Detector(tmp_path / "run", "--manifest", str(models / "yolov5n.yaml"), "--models-dir",
                  str(models), "--variant", "fp32", model=None) as detector:  # fmt: skip
        detector.wait_ready(120)
        sock = detector.client()
        assert_person(request(sock, parts), box)
        status = call(detector.control_endpoint, "status", timeout_s=30)
        assert status["model"]["variant"] == "fp32"
        assert set(status["variants"]) == {"fp32", "dynamic", "truncated", "openvino"}

        swapped = call(detector.control_endpoint, "swap", "dynamic", timeout_s=120)
        assert swapped["ok"] and swapped["active"] == "dynamic", swapped
        assert_person(request(sock, parts), box)
        refused = call(detector.control_endpoint, "swap", "truncated", timeout_s=120)
        assert not refused["ok"]
        assert_person(request(sock, parts), box)  # still the dynamic variant

        scrape = detector.metrics()
        info = scrape.samples("edged_model_info")
        assert [(s.labels["variant"], s.value) for s in info] == [("dynamic", 1.0)]
        assert scrape.value("edged_model_swaps_total", result="ok") == 1
        assert scrape.value("edged_model_swaps_total", result="refused") == 1
        assert call(detector.control_endpoint, "status", timeout_s=30)["model"]["precision"] == (
            "int8-dynamic"
        )
        # Another runtime behind the same protocol: OpenVINO reading the ONNX file.
        swapped = call(detector.control_endpoint, "swap", "openvino", timeout_s=120)
        assert swapped["ok"] and swapped["active"] == "openvino", swapped
        assert_person(request(sock, parts), box)
        info = detector.metrics().samples("edged_model_info")
        assert [s.labels["backend"] for s in info] == ["openvino"]
        assert detector.stop() == 0


def test_a_hailo_model_answers_too(tmp_path: Path):
    """The Hailo backend (with the hailo_platform test double: NMS-by-class output) behind the
    same protocol: its normalised boxes come back normalised to the request's tensor."""
    # class 0 (person), y1 x1 y2 x2 normalised to the 640x640 HEF input, score 0.9
    env = fake_env(EDGED_FAKE_HAILO_DETECTIONS=json.dumps([[0, 0.2, 0.3, 0.8, 0.7, 0.9]]))
    hef = write_hef(tmp_path / "yolov8s_h8l.hef", arch="HAILO8L")
    rgb, _ = person_image()
    with Detector(tmp_path / "run", model=hef, env=env) as detector:
        detector.wait_ready(120)
        result = request(detector.client(), [header([1, SIDE, SIDE, 3], "uint8"), rgb.tobytes()])
        assert result[0].tolist() == pytest.approx([0, 0.9, 0.2, 0.3, 0.8, 0.7], abs=1e-3)
        assert not result[1:].any()
        info = detector.metrics().samples("edged_model_info")
        assert [s.labels["backend"] for s in info] == ["hailo"]
        assert detector.stop() == 0


def test_an_oversized_request_is_dropped_by_zeromq(detector: Detector):
    """Over detector.max_request_mb (8): ZeroMQ drops that peer before edged reads a byte;
    nothing is answered, nothing counted, and the next client is served as usual."""
    before = detector.outcomes()
    big = detector.client()
    big.send_multipart([header([1, 2048, 2048, 3], "float32"), bytes(2048 * 2048 * 3 * 4)])
    assert not big.poll(2000)  # never answered (the wait only bounds the test)
    rgb, box = person_image()
    assert_person(request(detector.client(), [header([1, SIDE, SIDE, 3], "uint8"),
                                               rgb.tobytes()]), box)  # fmt: skip
    after = detector.outcomes()
    assert after["error"] == before["error"]
    assert sum(after.values()) == sum(before.values()) + 1


def test_runs_as_a_systemd_notify_service(tmp_path: Path):
    """READY=1 once it answers (with a STATUS), watchdog pings from the serving loop,
    STOPPING=1 on SIGTERM: what a Type=notify unit with WatchdogSec= needs."""
    with NotifySocketReceiver() as notify:
        env = notify.environ(watchdog_usec=1_000_000)
        with Detector(tmp_path, env=env) as detector:
            ready = notify.wait_for(lambda m: m.get("READY") == "1", 120)
            assert "serving yolov5n/default on ipc://" in ready["STATUS"]
            rgb, box = person_image()  # READY means it answers
            assert_person(request(detector.client(), [header([1, SIDE, SIDE, 3], "uint8"),
                                                       rgb.tobytes()]), box)  # fmt: skip
            notify.wait_for_count(lambda m: m.get("WATCHDOG") == "1", 2, 30)
            assert detector.stop() == 0
        notify.wait_for(lambda m: m.get("STOPPING") == "1", 10)
