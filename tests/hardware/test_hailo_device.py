"""The Hailo backend on a real Hailo-8/8L (Raspberry Pi AI Kit / AI HAT+).

Skips itself unless /dev/hailo0 exists, the real ``hailo_platform`` (HailoRT 4.18+) imports, and
the HEFs Raspberry Pi OS ships are in /usr/share/hailo-models (``sudo apt install hailo-all``).
Run on the Pi with ``pytest -m hardware tests/hardware``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from edged.backends.base import BackendError, load_backend
from edged.config import HailoOptions
from tests.inference import box_iou, detect

pytestmark = pytest.mark.hardware

HEF_DIR = Path("/usr/share/hailo-models")
SHARED = Path(__file__).resolve().parents[2].parent / "shared/data/coco-val2017-100"
IMAGE = SHARED / "images/val2017/000000000785.jpg"  # one skier: COCO person, big and clear
LABEL = SHARED / "labels/val2017/000000000785.txt"
FAKES = Path(__file__).resolve().parents[1] / "fakes"


def _real_hailo_platform() -> ModuleType:
    if not Path("/dev/hailo0").exists():
        pytest.skip("no /dev/hailo0 (no Hailo device or the hailo_pci driver is not loaded)")
    try:
        import hailo_platform
    except Exception as exc:
        pytest.skip(f"hailo_platform not importable: {exc}")
    if Path(hailo_platform.__file__).resolve().is_relative_to(FAKES):
        pytest.skip("hailo_platform is the test double, not HailoRT")
    return hailo_platform


@pytest.fixture(scope="module")
def arch() -> str:
    from edged.backends.hailo_device import hailo_device_info

    hp = _real_hailo_platform()
    return hailo_device_info(hailo_platform=hp)["architecture"]


def _hef(arch: str, other: bool = False) -> Path:
    suffix = {"HAILO8L": "h8l", "HAILO8": "h8"}.get(arch)
    if suffix is None:
        pytest.skip(f"device architecture {arch} has no yolov8s HEF in hailo-models")
    if other:
        suffix = "h8" if suffix == "h8l" else "h8l"
    path = HEF_DIR / f"yolov8s_{suffix}.hef"
    if not path.is_file():
        pytest.skip(f"{path} not installed (sudo apt install hailo-models)")
    return path


def test_detects_the_person_in_a_coco_image(arch: str) -> None:
    if not IMAGE.is_file():
        pytest.skip(f"{IMAGE} missing (../shared/data)")
    image = cv2.imread(str(IMAGE))
    h, w = image.shape[:2]
    _, cx, cy, bw, bh = (float(v) for v in LABEL.read_text().split("\n")[0].split())
    truth = np.array([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])

    backend = load_backend("hailo", _hef(arch), HailoOptions(), warmup_runs=2)
    try:
        assert backend.output_shapes == [(-1, 6)]
        dets = detect(backend, image, conf_threshold=0.4)
        assert backend.last_latency_s is not None and backend.last_latency_s < 0.5
    finally:
        backend.close()
    people = dets.boxes[dets.class_ids == 0]
    assert len(people) >= 1, dets
    assert max(box_iou(p, truth) for p in people) > 0.6


def test_pipelined_inference_keeps_up(arch: str) -> None:
    tensor = np.zeros((1, 640, 640, 3), np.uint8)
    with load_backend("hailo", _hef(arch), HailoOptions(), warmup_runs=1) as backend:
        started = time.perf_counter()
        jobs = [backend.infer_async(tensor) for _ in range(2)]
        done = []
        for _ in range(30):  # keep two frames on the NPU: submit n+2 before collecting n
            jobs[0].result()
            done.append(jobs[0])
            jobs = [*jobs[1:], backend.infer_async(tensor)]
        for job in jobs:
            job.result()
        elapsed = time.perf_counter() - started
        latencies = [job.latency_s for job in [*done, *jobs] if job.latency_s is not None]
    assert len(latencies) >= 30
    assert elapsed / 32 < 0.1  # yolov8s runs far faster than 10 fps on either chip


def test_two_models_share_the_device(arch: str) -> None:
    hef = _hef(arch)
    a = load_backend("hailo", hef, HailoOptions(), warmup_runs=1)
    try:
        b = load_backend("hailo", hef, HailoOptions(), warmup_runs=1)
        try:
            blank = np.zeros((1, 640, 640, 3), np.uint8)
            assert a.infer(blank)[0].shape[1] == 6
            assert b.infer(blank)[0].shape[1] == 6
        finally:
            b.close()
    finally:
        a.close()


def test_a_hailo8_hef_on_a_hailo8l_is_refused_clearly(arch: str) -> None:
    from edged.backends.hailo_errors import HailoBackendError, HailoFailure

    if arch != "HAILO8L":
        pytest.skip("only a Hailo-8L refuses the other chip's HEF")
    with pytest.raises(BackendError) as info:
        load_backend("hailo", _hef(arch, other=True), HailoOptions(), warmup_runs=0)
    assert isinstance(info.value, HailoBackendError)
    assert info.value.failure in (HailoFailure.ARCH_MISMATCH, HailoFailure.INVALID_HEF)


def test_a_hailo8_runs_a_hailo8l_hef(arch: str) -> None:
    """HailoRT's is_hef_compatible: a Hailo-8 accepts HEFs compiled for the 8L (slower)."""
    if arch != "HAILO8":
        pytest.skip("a Hailo-8 device runs Hailo-8L HEFs; this is not one")
    with load_backend("hailo", _hef(arch, other=True), HailoOptions(), warmup_runs=0) as backend:
        assert backend.infer(np.zeros((1, 640, 640, 3), np.uint8))


def test_device_held_by_another_process_is_reported_busy(arch: str) -> None:
    from edged.backends.hailo_errors import HailoBackendError, HailoFailure

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, hailo_platform as hp\n"
            "v = hp.VDevice()\nprint('ready', flush=True)\nsys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        if line.strip() != "ready":
            pytest.skip("could not hold the device from a second process")
        with pytest.raises(BackendError) as info:
            load_backend("hailo", _hef(arch), HailoOptions(), warmup_runs=0)
        assert isinstance(info.value, HailoBackendError)
        assert info.value.failure is HailoFailure.BUSY
    finally:
        if holder.stdin:
            holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()


def test_chip_temperature(arch: str) -> None:
    from edged.backends.hailo_device import HailoTemperatureReader

    reader = HailoTemperatureReader()
    try:
        temperature = reader.read()
    finally:
        reader.close()
    assert temperature is not None and 10 < temperature < 120
