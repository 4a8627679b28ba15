"""The Hailo backend against the ``hailo_platform`` test double (tests/fakes/hailo_platform).

Everything here runs against the double, not HailoRT: it checks edged's use of the documented
call surface (shared VDevice, InferModel formats, bindings, run_async + callback, NMS parsing,
error mapping), not the chip. tests/hardware/test_hailo_device.py covers a real device.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from edged.backends.base import Backend, BackendBroken, BackendError, load_backend
from edged.backends.hailo import HailoBackend, import_hailo_platform, parse_version
from edged.backends.hailo_device import HailoTemperatureReader, hailo_device_info
from edged.backends.hailo_errors import HailoBackendError, HailoFailure
from edged.config import HailoOptions
from edged.postprocess.decoders import OutputLayout, detect_layout
from edged.preprocess import letterbox_geometry

try:
    from tests.fakes.fixtures import FAKES_DIR, fake_env, fake_hailo, write_hef
    from tests.inference import detect
except ModuleNotFoundError:  # tests/unit is not a package and the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.fakes.fixtures import FAKES_DIR, fake_env, fake_hailo, write_hef
    from tests.inference import detect

__all__ = ["fake_hailo"]  # the fixture, imported for pytest

BLANK = np.zeros((1, 640, 640, 3), np.uint8)


@pytest.fixture
def hef(tmp_path: Path) -> Path:
    return write_hef(tmp_path / "yolov8s_h8l.hef")


def _load(path: Path, **options: object) -> HailoBackend:
    backend = load_backend("hailo", path, HailoOptions(**options), warmup_runs=0)
    assert isinstance(backend, HailoBackend)
    return backend


def _wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


# --- loading ---------------------------------------------------------------------------------


def test_registry_loads_and_warms_up_an_nms_hef(fake_hailo: ModuleType, hef: Path) -> None:
    backend = load_backend("hailo", hef, HailoOptions(), warmup_runs=2)
    try:
        assert isinstance(backend, Backend)
        assert backend.input.layout == "NHWC" and backend.input.dtype == "uint8"
        assert backend.input.shape == (1, 640, 640, 3)
        assert backend.output_shapes == [(-1, 6)]
        assert backend.precision == "int8"
        assert backend.metadata["nms"] == "true"
        assert backend.metadata["num_classes"] == "80"
        assert backend.metadata["hailort_version"] == "4.20.0"
        assert backend.metadata["device_architecture"] == "HAILO8L"
        assert fake_hailo.FAKE.calls["run_async"] == 2  # the warm-up ran on the "device"
        assert detect_layout(backend.output_shapes, 80) is OutputLayout.HAILO_NMS
    finally:
        backend.close()


def test_formats_and_scheduler_requested_from_hailort(fake_hailo: ModuleType, hef: Path) -> None:
    backend = _load(hef, batch_size=2)
    try:
        vdevice = backend._vdevice
        assert (
            vdevice.params.scheduling_algorithm == fake_hailo.HailoSchedulingAlgorithm.ROUND_ROBIN
        )
        model = vdevice.infer_models[0]
        assert model.batch_size == 2
        assert model.input().format.type == fake_hailo.FormatType.UINT8
        assert all(o.format.type == fake_hailo.FormatType.FLOAT32 for o in model.outputs)
    finally:
        backend.close()


def test_nms_output_is_dense_and_decodes(fake_hailo: ModuleType, hef: Path) -> None:
    with _load(hef) as backend:
        (out,) = backend.infer(BLANK)
    assert out.dtype == np.float32 and out.shape == (3, 6)
    np.testing.assert_allclose(out, fake_hailo.DEFAULT_DETECTIONS, rtol=1e-6)


@pytest.mark.parametrize("version", ["4.18.0", "4.19.0", "4.21.0"])
def test_every_supported_get_buffer_nesting(
    fake_hailo: ModuleType, hef: Path, version: str
) -> None:
    fake_hailo.set_version(version)
    with _load(hef) as backend:
        (out,) = backend.infer(BLANK)
        assert backend.metadata["hailort_version"] == version
    np.testing.assert_allclose(out, fake_hailo.DEFAULT_DETECTIONS, rtol=1e-6)


def test_letterbox_is_undone_end_to_end(fake_hailo: ModuleType, tmp_path: Path) -> None:
    """A box drawn in a 1280×720 frame comes back in source pixels through the whole path."""
    src_w, src_h, size = 1280, 720, 640
    truth = np.array([[200.0, 100.0, 520.0, 660.0], [900.0, 300.0, 1200.0, 450.0]], np.float32)
    lb, _, _ = letterbox_geometry(src_w, src_h, size, size)
    rows = []
    for class_id, score, (x1, y1, x2, y2) in zip((0, 2), (0.9, 0.8), truth, strict=True):
        ix1, iy1 = x1 * lb.scale + lb.pad_x, y1 * lb.scale + lb.pad_y
        ix2, iy2 = x2 * lb.scale + lb.pad_x, y2 * lb.scale + lb.pad_y
        rows.append([class_id, *(float(v) / size for v in (iy1, ix1, iy2, ix2)), score])
    hef = write_hef(tmp_path / "m.hef", detections=rows)

    frame = np.full((src_h, src_w, 3), 60, np.uint8)
    with _load(hef) as backend:
        assert (backend.input.width, backend.input.height) == (size, size)
        dets = detect(backend, frame, conf_threshold=0.25)
    order = np.argsort(dets.class_ids)
    np.testing.assert_array_equal(dets.class_ids[order], [0, 2])
    np.testing.assert_allclose(dets.boxes[order], truth, atol=0.5)


def test_raw_outputs_for_hefs_without_nms(fake_hailo: ModuleType, tmp_path: Path) -> None:
    hef = write_hef(
        tmp_path / "yolov8n_raw.hef",
        outputs=[{"name": "yolov8n/output0", "shape": [1, 84, 8400], "fill": 0.25}],
    )
    with _load(hef) as backend:
        assert backend.output_shapes == [(1, 84, 8400)]
        assert backend.metadata["nms"] == "false"
        assert detect_layout(backend.output_shapes, 80) is OutputLayout.YOLOV8
        (out,) = backend.infer(BLANK)
    assert out.shape == (1, 84, 8400) and out.dtype == np.float32
    assert np.all(out == 0.25)


def test_image_shaped_raw_outputs_get_a_batch_dimension(
    fake_hailo: ModuleType, tmp_path: Path
) -> None:
    hef = write_hef(
        tmp_path / "raw.hef",
        outputs=[
            {"name": "conv63", "shape": [80, 80, 64], "fill": 1.0},
            {"name": "conv64", "shape": [40, 40, 80], "fill": 2.0},
        ],
    )
    with _load(hef) as backend:
        assert backend.output_shapes == [(1, 80, 80, 64), (1, 40, 40, 80)]
        a, b = backend.infer(BLANK)
    assert a.shape == (1, 80, 80, 64) and np.all(a == 1.0)
    assert b.shape == (1, 40, 40, 80) and np.all(b == 2.0)


def test_rejects_wrong_input(fake_hailo: ModuleType, hef: Path) -> None:
    with _load(hef) as backend:
        with pytest.raises(BackendError, match="does not match the HEF input"):
            backend.infer(np.zeros((1, 320, 320, 3), np.uint8))
        with pytest.raises(BackendError, match="not uint8"):
            backend.infer(np.zeros((1, 640, 640, 3), np.float32))
        # an unbatched H×W×3 frame is accepted too
        assert backend.infer(BLANK[0])[0].shape == (3, 6)


# --- the shared VDevice ----------------------------------------------------------------------


def test_models_share_one_vdevice(fake_hailo: ModuleType, tmp_path: Path) -> None:
    """Old and new variant of a hot swap side by side: one VDevice, both run."""
    a = _load(write_hef(tmp_path / "a.hef", detections=[[1, 0.1, 0.1, 0.2, 0.2, 0.9]]))
    b = _load(write_hef(tmp_path / "b.hef", detections=[[3, 0.3, 0.3, 0.4, 0.4, 0.8]]))
    try:
        assert fake_hailo.FAKE.calls["VDevice"] == 1
        assert a._vdevice is b._vdevice
        assert a.infer(BLANK)[0][0, 0] == 1
        assert b.infer(BLANK)[0][0, 0] == 3
        a.close()
        assert b.infer(BLANK)[0][0, 0] == 3  # the survivor keeps the device
        assert fake_hailo._OPEN_VDEVICES["count"] == 1
    finally:
        a.close()
        b.close()
    assert fake_hailo._OPEN_VDEVICES["count"] == 0  # released with the last model
    # and a new model opens a new one
    with _load(tmp_path / "a.hef"):
        assert fake_hailo.FAKE.calls["VDevice"] == 2


def test_conflicting_device_settings_in_one_process(fake_hailo: ModuleType, hef: Path) -> None:
    with _load(hef), pytest.raises(BackendError, match="share it"):
        _load(hef, device_id="0000:01:00.0")


# --- async -----------------------------------------------------------------------------------


def test_infer_async_returns_before_the_npu_finishes(fake_hailo: ModuleType, hef: Path) -> None:
    fake_hailo.FAKE.latency_ms = 150
    with _load(hef) as backend:
        job = backend.infer_async(BLANK)
        assert not job.done()  # the host is free while the NPU works
        assert _wait_until(job.done, timeout=5)
        (out,) = job.result(timeout=1)
        assert out.shape == (3, 6)
        assert job.latency_s is not None and job.latency_s >= 0.1


def test_pipelined_jobs_more_than_the_device_queue(fake_hailo: ModuleType, tmp_path: Path) -> None:
    """More submissions than HailoRT's queue: later ones wait for a slot, none is lost."""
    hef = write_hef(tmp_path / "raw.hef", outputs=[{"name": "out", "shape": [1, 1, 4]}])
    fake_hailo.FAKE.queue_size = 2
    fake_hailo.FAKE.latency_ms = 5
    with _load(hef) as backend:
        frames = [np.full((1, 640, 640, 3), v, np.uint8) for v in (0, 51, 102, 153, 204, 255)]
        jobs = [backend.infer_async(f) for f in frames]
        results = [job.result(timeout=5)[0] for job in jobs]
        latencies = [job.latency_s for job in jobs]
    # each result belongs to its own frame (outputs are copied out of the reused buffers)
    np.testing.assert_allclose([r.ravel()[0] for r in results], [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert len(latencies) == 6 and all(t is not None and t > 0 for t in latencies)
    assert backend.last_latency_s is not None


def test_caller_may_reuse_its_tensor_right_after_submit(
    fake_hailo: ModuleType, tmp_path: Path
) -> None:
    hef = write_hef(tmp_path / "raw.hef", outputs=[{"name": "out", "shape": [1, 1, 4]}])
    fake_hailo.FAKE.latency_ms = 50
    tensor = np.full((1, 640, 640, 3), 255, np.uint8)
    with _load(hef) as backend:
        job = backend.infer_async(tensor)
        tensor[...] = 0  # e.g. the next frame written into the same shared-memory slot
        assert job.result(timeout=5)[0].ravel()[0] == pytest.approx(1.0)


def test_callbacks_arrive_on_hailort_thread(
    fake_hailo: ModuleType, hef: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    original = HailoBackend._on_done

    def spy(self, *args):
        seen.append(threading.current_thread().name)
        return original(self, *args)

    monkeypatch.setattr(HailoBackend, "_on_done", spy)
    with _load(hef) as backend:
        backend.infer(BLANK)
    assert seen and seen[0] != threading.main_thread().name


def test_concurrent_submitters(fake_hailo: ModuleType, hef: Path) -> None:
    fake_hailo.FAKE.queue_size = 3
    errors: list[BaseException] = []
    with _load(hef) as backend:

        def worker() -> None:
            try:
                for _ in range(10):
                    assert backend.infer(BLANK)[0].shape == (3, 6)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert not any(t.is_alive() for t in threads)
    assert errors == []


# --- errors ----------------------------------------------------------------------------------


def _error(exc_info: pytest.ExceptionInfo[BackendError]) -> HailoBackendError:
    assert isinstance(exc_info.value, HailoBackendError), exc_info.value
    return exc_info.value


def test_no_device(fake_hailo: ModuleType, hef: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edged.backends.hailo_errors as hailo_errors

    monkeypatch.setattr(hailo_errors, "hailo_device_nodes", lambda: [])
    fake_hailo.FAKE.error = "no_device"
    with pytest.raises(BackendError) as info:
        _load(hef)
    err = _error(info)
    assert err.failure is HailoFailure.NO_DEVICE
    assert "no Hailo device found" in str(err) and "hailo-all" in str(err)


def test_device_busy_in_another_process(fake_hailo: ModuleType, hef: Path) -> None:
    fake_hailo.FAKE.error = "busy"
    with pytest.raises(BackendError) as info:
        _load(hef)
    err = _error(info)
    assert err.failure is HailoFailure.BUSY
    assert (
        "busy" in str(err) and "lsof /dev/hailo0" in str(err) and "HAILO_DEVICE_IN_USE" in str(err)
    )


def test_device_taken_by_a_vdevice_outside_edged(fake_hailo: ModuleType, hef: Path) -> None:
    other = fake_hailo.VDevice()  # e.g. another library in this process holds the chip
    try:
        with pytest.raises(BackendError) as info:
            _load(hef)
        assert _error(info).failure is HailoFailure.BUSY
        assert "HAILO_OUT_OF_PHYSICAL_DEVICES" in str(info.value)
    finally:
        other.release()


@pytest.mark.parametrize("version", ["4.18.0", "4.20.0"])
def test_hef_for_the_other_chip(fake_hailo: ModuleType, tmp_path: Path, version: str) -> None:
    fake_hailo.set_version(version)
    hef = write_hef(tmp_path / "yolov8s_h8.hef", arch="HAILO8")  # Hailo-8 HEF on a Hailo-8L
    with pytest.raises(BackendError) as info:
        _load(hef)
    err = _error(info)
    assert err.failure is HailoFailure.ARCH_MISMATCH
    assert "yolov8s_h8.hef" in str(err) and "_h8l.hef" in str(err)
    assert fake_hailo._OPEN_VDEVICES["count"] == 0  # the failed load released the device


def test_invalid_hef(fake_hailo: ModuleType, tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.hef"
    corrupt.write_text("corrupt")
    with pytest.raises(BackendError) as info:
        _load(corrupt)
    assert _error(info).failure is HailoFailure.INVALID_HEF


def test_missing_hef_file(fake_hailo: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="HEF file not found"):
        _load(tmp_path / "nope.hef")


def test_driver_failure(fake_hailo: ModuleType, hef: Path) -> None:
    fake_hailo.FAKE.error = "driver"
    with pytest.raises(BackendError) as info:
        _load(hef)
    assert _error(info).failure is HailoFailure.DRIVER
    assert "dmesg" in str(info.value)


def test_timeout_never_hangs(fake_hailo: ModuleType, hef: Path) -> None:
    with _load(hef, timeout_ms=200) as backend:
        fake_hailo.FAKE.error = "timeout"  # the device stops answering
        fake_hailo.FAKE.queue_size = 2
        started = time.monotonic()
        with pytest.raises(BackendBroken) as info:
            backend.infer(BLANK)
        assert _error(info).failure is HailoFailure.TIMEOUT
        # The fake answers nothing: without the timeout this would hang. The bound only catches
        # that (a busy machine may wake the waiting thread late; nothing here is a speed).
        assert time.monotonic() - started < 30
        # broken now: later frames are refused at once, not sent into a dead pipeline
        for _ in range(3):
            with pytest.raises(BackendBroken, match="unusable since an earlier failure"):
                backend.infer(BLANK)
        started = time.monotonic()
    assert time.monotonic() - started < 30  # close() did not wait for stuck frames for good


def test_stuck_frames_holding_every_slot_time_the_next_submission_out(
    fake_hailo: ModuleType, hef: Path
) -> None:
    """The bounded wait for a free slot: frames that never complete keep theirs."""
    fake_hailo.FAKE.queue_size = 2
    with _load(hef, timeout_ms=200) as backend:
        fake_hailo.FAKE.error = "timeout"  # the device stops answering
        stuck = [backend.infer_async(BLANK) for _ in range(2)]
        assert not any(job.done() for job in stuck)
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            backend.infer_async(BLANK)
        waited = time.monotonic() - started
        assert _error(info).failure is HailoFailure.TIMEOUT
        assert "2 frame(s) in flight and none completed within 200 ms" in str(info.value)
        assert 0.15 <= waited < 30, waited  # waited its timeout; the upper bound: not for good
        assert len(stuck) == 2


def test_inference_failure_breaks_the_backend_until_it_is_loaded_again(
    fake_hailo: ModuleType, hef: Path
) -> None:
    """HailoRT shuts a configured model's pipeline down on an error: the backend says it is
    broken (the inference stage then loads the model again) instead of failing every frame."""
    with _load(hef) as backend:
        fake_hailo.FAKE.error = "infer_error"
        with pytest.raises(BackendBroken, match="HAILO_INVALID_OPERATION"):
            backend.infer(BLANK)
        fake_hailo.FAKE.error = ""
        with pytest.raises(BackendBroken, match="unusable since an earlier failure"):
            backend.infer(BLANK)
    with _load(hef) as fresh:
        assert fresh.infer(BLANK)[0].shape == (3, 6)


def test_closed_backend(fake_hailo: ModuleType, hef: Path) -> None:
    backend = _load(hef)
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        backend.infer(BLANK)


def test_hailort_too_old(fake_hailo: ModuleType, hef: Path) -> None:
    fake_hailo.set_version("4.17.1")
    with pytest.raises(BackendError, match=r"HailoRT 4\.17\.1 is too old.*4\.18\.0"):
        _load(hef)


def test_hailort_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hailo_platform", None)
    with pytest.raises(BackendError, match=r"apt install hailo-all.*system-site-packages"):
        import_hailo_platform()


def test_parse_version() -> None:
    assert parse_version("4.18.0") == (4, 18, 0)
    assert parse_version("4.20") == (4, 20, 0)
    assert parse_version("4.21.0-1") == (4, 21, 0)
    assert parse_version("dev") is None


# --- telemetry -------------------------------------------------------------------------------


def test_temperature(fake_hailo: ModuleType) -> None:
    reader = HailoTemperatureReader(
        importer=lambda: fake_hailo, device_nodes=lambda: ["/dev/hailo0"]
    )
    assert reader.read() == pytest.approx(52.5)  # the hotter of ts0 / ts1
    fake_hailo.FAKE.temperature = 61.0
    assert reader.read() == pytest.approx(61.0)
    assert fake_hailo.FAKE.calls["Device"] == 1  # the control handle is kept
    reader.close()


def test_temperature_unavailable(fake_hailo: ModuleType) -> None:
    absent = HailoTemperatureReader(importer=lambda: fake_hailo, device_nodes=lambda: [])
    assert absent.read() is None

    def broken() -> ModuleType:
        raise ImportError("no hailo_platform")

    assert (
        HailoTemperatureReader(importer=broken, device_nodes=lambda: ["/dev/hailo0"]).read() is None
    )
    fake_hailo.FAKE.error = "driver"
    failing = HailoTemperatureReader(
        importer=lambda: fake_hailo, device_nodes=lambda: ["/dev/hailo0"]
    )
    assert failing.read() is None


def test_device_info(fake_hailo: ModuleType) -> None:
    info = hailo_device_info(hailo_platform=fake_hailo)
    assert info["architecture"] == "HAILO8L"
    assert info["device_id"] == "0000:01:00.0"
    assert info["temperature_c"] == "52.5"


# --- a spawned stage process -----------------------------------------------------------------


def test_a_child_process_imports_the_double_through_pythonpath(tmp_path: Path) -> None:
    hef = tmp_path / "dummy.hef"
    hef.write_bytes(b"\x00not json")
    code = (
        "import json, sys, numpy as np\n"
        "from pathlib import Path\n"
        "import hailo_platform\n"
        "from edged.backends.base import load_backend\n"
        "from edged.config import HailoOptions\n"
        "b = load_backend('hailo', Path(sys.argv[1]), HailoOptions(), warmup_runs=1)\n"
        "out = b.infer(np.zeros(b.input.shape, np.uint8))[0]\n"
        "b.close()\n"
        "print(json.dumps({'file': hailo_platform.__file__, 'rows': out.tolist()}))\n"
    )
    dets = [[7, 0.1, 0.2, 0.3, 0.4, 0.55]]
    result = subprocess.run(
        [sys.executable, "-c", code, str(hef)],
        env=fake_env(
            EDGED_FAKE_HAILO_DETECTIONS=json.dumps(dets), EDGED_FAKE_HAILO_VERSION="4.18.0"
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(payload["file"]).resolve().is_relative_to(FAKES_DIR)
    np.testing.assert_allclose(payload["rows"], dets, rtol=1e-6)


def test_a_chosen_device_keeps_the_model_scheduler(fake_hailo: ModuleType, hef: Path) -> None:
    """``VDevice(params, device_ids=…)`` would drop the params (and the scheduler with them):
    the device goes into the params instead, and inference runs."""
    fake_hailo.FAKE.devices = 2
    with _load(hef, device_id="0000:02:00.0") as backend:
        assert backend.infer(BLANK)[0].shape == (3, 6)
        vdevice = backend._vdevice
        assert vdevice.params.device_ids == ["0000:02:00.0"]
        assert (
            vdevice.params.scheduling_algorithm == fake_hailo.HailoSchedulingAlgorithm.ROUND_ROBIN
        )


def test_the_fake_drops_the_params_when_given_device_ids_like_hailort(
    fake_hailo: ModuleType,
) -> None:
    params = fake_hailo.VDevice.create_params()
    vdevice = fake_hailo.VDevice(params, device_ids=["0000:01:00.0"])
    try:
        assert vdevice.params.scheduling_algorithm == fake_hailo.HailoSchedulingAlgorithm.NONE
    finally:
        vdevice.release()
