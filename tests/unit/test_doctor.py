"""``edged doctor`` against a fake /proc, /sys, /dev tree and fake modules (the doubles)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from edged import doctor
from edged.doctor import (
    CheckResult,
    check_board,
    check_camera,
    check_hailo,
    check_onnxruntime,
    check_opencv,
    exit_code,
    opencv_backends,
    register_commands,
    run_checks,
    soc_temperature_celsius,
    throttled_flags,
)

try:
    from tests.fakes.fixtures import fake_hailo, fake_picamera2
except ModuleNotFoundError:  # tests/unit is not a package and the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.fakes.fixtures import fake_hailo, fake_picamera2

__all__ = ["fake_hailo", "fake_picamera2"]  # fixtures, imported for pytest


def _pi_root(tmp_path: Path, *, governor: str = "ondemand", temp_milli: int = 48650) -> Path:
    root = tmp_path / "root"
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    for cpu in range(4):
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_governor").write_text(governor + "\n")
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text(f"{temp_milli}\n")
    (root / "dev").mkdir()
    for node in ("video0", "video19", "hailo0"):
        (root / "dev" / node).touch()
    return root


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def _importer(**modules: ModuleType | None):
    def load(name: str) -> ModuleType:
        if name in modules:
            module = modules[name]
            if module is None:
                raise ModuleNotFoundError(f"No module named '{name}'", name=name)
            return module
        return importlib.import_module(name)

    return load


def test_board_on_a_pi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        doctor,
        "throttled_flags",
        lambda: (0x50000, ["under-voltage has occurred", "throttling has occurred"]),
    )
    got = _by_name(check_board(_pi_root(tmp_path)))
    assert got["model"].status == "ok" and got["model"].summary == "Raspberry Pi 5 Model B Rev 1.0"
    assert got["cpu governor"].summary == "ondemand" and got["cpu governor"].status == "ok"
    assert got["SoC temperature"].summary == "48.6 °C" and got["SoC temperature"].status == "ok"
    assert got["throttling"].status == "warn" and "under-voltage" in got["throttling"].summary


def test_board_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "throttled_flags", lambda: None)
    got = _by_name(check_board(_pi_root(tmp_path, governor="powersave", temp_milli=83100)))
    assert got["cpu governor"].status == "warn"
    assert got["SoC temperature"].status == "warn" and "cool" in got["SoC temperature"].hint.lower()
    assert "throttling" not in got


def test_not_a_pi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "throttled_flags", lambda: None)
    got = _by_name(check_board(tmp_path))
    assert got["model"].status == "info" and "not a Raspberry Pi" in got["model"].summary
    assert got["SoC temperature"].summary == "unavailable"


def test_soc_temperature_prefers_the_cpu_zone(tmp_path: Path) -> None:
    for i, (kind, milli) in enumerate([("rp1_adc", 30000), ("cpu-thermal", 55500)]):
        zone = tmp_path / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind)
        (zone / "temp").write_text(str(milli))
    assert soc_temperature_celsius(tmp_path) == 55.5


def test_throttled_decoding() -> None:
    def runner(*args, **kwargs):
        return SimpleNamespace(stdout="throttled=0x50005\n")

    value, flags = throttled_flags(runner)
    assert value == 0x50005
    assert flags == [
        "under-voltage now",
        "throttled now",
        "under-voltage has occurred",
        "throttling has occurred",
    ]

    def broken(*args, **kwargs):
        raise OSError("no vcgencmd")

    assert throttled_flags(broken) is None


def test_camera_with_picamera2(tmp_path: Path, fake_picamera2: ModuleType) -> None:
    fake_picamera2.FAKE.cameras = 2
    got = _by_name(check_camera(_pi_root(tmp_path)))
    assert got["picamera2"].status == "ok"
    assert got["libcamera"].status == "ok"
    assert got["cameras"].summary == "picamera2:0 imx708; picamera2:1 imx477"
    assert got["V4L2 devices"].summary == "/dev/video0, /dev/video19"


def test_camera_without_picamera2(tmp_path: Path) -> None:
    got = _by_name(check_camera(tmp_path, _importer(picamera2=None)))
    assert got["picamera2"].status == "warn"
    assert "python3-picamera2" in got["picamera2"].hint
    assert got["V4L2 devices"].summary == "none"


def test_picamera2_broken_by_numpy_2_gets_the_numpy_hint(tmp_path: Path) -> None:
    """What apt's simplejpeg raises on import when the venv has numpy 2."""

    def load(name: str) -> ModuleType:
        raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. "
                         "Expected 96 from C header, got 88 from PyObject")  # fmt: skip

    got = _by_name(check_camera(tmp_path, load))
    assert got["picamera2"].status == "warn"
    assert "'numpy<2'" in got["picamera2"].hint


def test_camera_without_libcamera(tmp_path: Path) -> None:
    def load(name: str) -> ModuleType:
        raise ModuleNotFoundError("No module named 'libcamera'", name="libcamera")

    got = _by_name(check_camera(tmp_path, load))
    assert "python3-libcamera" in got["picamera2"].hint


def test_no_camera_detected(tmp_path: Path, fake_picamera2: ModuleType) -> None:
    fake_picamera2.FAKE.cameras = 0
    got = _by_name(check_camera(tmp_path))
    assert got["cameras"].status == "warn" and "rpicam-hello" in got["cameras"].hint


def test_hailo_present(tmp_path: Path, fake_hailo: ModuleType) -> None:
    got = _by_name(check_hailo(_pi_root(tmp_path)))
    assert got["device"].summary == "/dev/hailo0"
    assert got["HailoRT"].status == "ok" and got["HailoRT"].summary == "4.20.0"
    assert got["chip"].summary.startswith("HAILO8L, firmware 4.20.0")
    assert "_h8l.hef" in got["chip"].hint
    assert got["chip temperature"].summary == "52.5 °C"


def test_hailo_too_old(tmp_path: Path, fake_hailo: ModuleType) -> None:
    fake_hailo.set_version("4.17.0")
    got = _by_name(check_hailo(_pi_root(tmp_path)))
    assert got["HailoRT"].status == "fail" and "4.18.0" in got["HailoRT"].hint


def test_hailo_driver_broken(tmp_path: Path, fake_hailo: ModuleType) -> None:
    fake_hailo.FAKE.error = "driver"
    got = _by_name(check_hailo(_pi_root(tmp_path)))
    assert got["chip"].status == "fail" and "cannot talk to the device" in got["chip"].summary


def test_hailo_absent(tmp_path: Path) -> None:
    got = _by_name(check_hailo(tmp_path, _importer(hailo_platform=None)))
    assert got["device"].status == "info"
    assert got["HailoRT"].status == "info"  # nothing fitted: not a problem
    assert "chip" not in got


def test_runtimes() -> None:
    ort = _by_name(check_onnxruntime())
    assert ort["ONNX Runtime"].status == "ok"
    assert "CPUExecutionProvider" in ort["ORT providers"].summary
    cv = _by_name(check_opencv())
    assert cv["OpenCV"].status == "ok"
    assert cv["OpenCV video"].summary.startswith("videoio:")
    missing = _by_name(check_onnxruntime(_importer(onnxruntime=None)))
    assert missing["ONNX Runtime"].status == "fail"


def test_opencv_backends_from_build_information() -> None:
    info = (
        "General configuration\n"
        "  Video I/O:\n"
        "    DC1394:                      NO\n"
        "    FFMPEG:                      YES\n"
        "      avcodec:                   YES (59.37.100)\n"
        "    GStreamer:                   YES (1.22.0)\n"
        "    v4l/v4l2:                    YES (linux/videodev2.h)\n"
        "\n"
        "  Parallel framework:            pthreads\n"
    )
    fake_cv2 = SimpleNamespace(getBuildInformation=lambda: info)
    assert opencv_backends(fake_cv2) == {"FFMPEG": True, "V4L2": True, "GSTREAMER": True}
    no_ffmpeg = SimpleNamespace(
        getBuildInformation=lambda: info.replace("FFMPEG:                      YES", "FFMPEG: NO")
    )
    assert opencv_backends(no_ffmpeg)["FFMPEG"] is False


def test_run_checks_survives_a_crashing_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args):
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(doctor, "check_camera", boom)
    monkeypatch.setattr(doctor, "throttled_flags", lambda: None)
    results = run_checks(tmp_path, _importer(picamera2=None, hailo_platform=None))
    crashed = [r for r in results if r.area == "camera"]
    assert crashed == [CheckResult("camera", "check", "fail", "RuntimeError: probe exploded")]
    assert exit_code(results) == 1
    assert any(r.name == "ONNX Runtime" for r in results)


def test_cli_registration_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(doctor, "throttled_flags", lambda: None)
    monkeypatch.setattr(
        doctor, "run_checks", lambda root: [CheckResult("board", "model", "ok", "Pi")]
    )
    parser = argparse.ArgumentParser()
    register_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor", "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"area": "board", "name": "model", "status": "ok", "summary": "Pi", "hint": ""}
    ]
    args = parser.parse_args(["doctor"])
    assert args.func(args) == 0
    assert "edged doctor" in capsys.readouterr().out


def test_optional_cpu_runtimes_are_reported_with_the_features_they_use():
    import importlib

    from edged.doctor import check_cpu_runtimes

    def without(names):
        def importer(name):
            if name in names:
                raise ImportError(f"No module named {name!r}")
            return importlib.import_module(name)

        return importer

    absent = {r.name: r for r in check_cpu_runtimes(without({"openvino", "ncnn"}))}
    assert absent["OpenVINO"].status == absent["NCNN"].status == "info"
    assert "edged[openvino]" in absent["OpenVINO"].hint and "edged[ncnn]" in absent["NCNN"].hint
    pytest.importorskip("openvino")
    pytest.importorskip("ncnn")
    present = {r.name: r for r in check_cpu_runtimes(without(set()))}
    assert present["OpenVINO"].status == "ok" and "FP32" in present["OpenVINO"].summary
    assert present["NCNN"].status == "ok" and "CPUs" in present["NCNN"].summary
