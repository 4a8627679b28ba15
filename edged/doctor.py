"""``edged doctor``: what this machine offers edged — camera, Hailo, runtimes, board state.

Every check is a pure-ish function returning :class:`CheckResult` s; the file system root and the
module importer are parameters, so tests run them against a fake ``/proc``/``/sys``/``/dev`` tree
and fake modules. Nothing here changes the system, and each probe is bounded (no subprocess waits
longer than a couple of seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from edged.backends.hailo_device import MIN_HAILORT
from edged.versions import installed_version, parse_version

Status = Literal["ok", "info", "warn", "fail"]
Importer = Callable[[str], ModuleType]

SOC_TEMP_WARN_C = 80.0  # the Pi 5 starts soft throttling around 80 °C, hard at 85 °C
HAILO_TEMP_WARN_C = 95.0
CPU_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "soc_thermal", "x86_pkg_temp")
# vcgencmd get_throttled bits
THROTTLE_FLAGS = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred",
    17: "frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}


@dataclass(frozen=True)
class CheckResult:
    """One line of the report: ``area`` groups lines, ``status`` says whether to act."""

    area: str
    name: str
    status: Status
    summary: str
    hint: str = ""


def _read_path(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def _read(root: Path, path: str) -> str | None:
    return _read_path(root / path.lstrip("/"))


def _try_import(importer: Importer, name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importer(name), None
    except Exception as exc:  # ImportError, or a binary module failing to load
        return None, f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------
# Board
# ---------------------------------------------------------------------------------------------


def check_board(root: Path = Path("/")) -> list[CheckResult]:
    """Pi model, CPU governor, SoC temperature, throttling (from /proc, /sys and vcgencmd)."""
    results = []
    model = _read(root, "/proc/device-tree/model")
    if model:
        status: Status = "ok" if "Raspberry Pi 5" in model else "info"
        hint = "" if status == "ok" else "edged is tuned for a Raspberry Pi 5"
        results.append(CheckResult("board", "model", status, model, hint))
    else:
        results.append(
            CheckResult("board", "model", "info", "not a Raspberry Pi (no device-tree model)")
        )

    cpus = root / "sys/devices/system/cpu"
    governors = sorted(
        {text for p in cpus.glob("cpu[0-9]*/cpufreq/scaling_governor") if (text := _read_path(p))}
    )
    if governors:
        gov = ", ".join(governors)
        bad = "powersave" in governors
        results.append(
            CheckResult(
                "board",
                "cpu governor",
                "warn" if bad else "ok",
                gov,
                "powersave caps the CPU clock; use ondemand or performance" if bad else "",
            )
        )
    else:
        results.append(CheckResult("board", "cpu governor", "info", "unknown (no cpufreq)"))

    temp = soc_temperature_celsius(root)
    if temp is None:
        results.append(CheckResult("board", "SoC temperature", "info", "unavailable"))
    else:
        hot = temp >= SOC_TEMP_WARN_C
        results.append(
            CheckResult(
                "board",
                "SoC temperature",
                "warn" if hot else "ok",
                f"{temp:.1f} °C",
                "the SoC throttles near 80–85 °C: add the Active Cooler or a fan" if hot else "",
            )
        )
    throttled = throttled_flags()
    if throttled is not None:
        value, flags = throttled
        results.append(
            CheckResult(
                "board",
                "throttling",
                "warn" if flags else "ok",
                ", ".join(flags) if flags else f"none (0x{value:x})",
                "use the official 27 W supply and cooling" if flags else "",
            )
        )
    return results


def soc_temperature_celsius(root: Path = Path("/")) -> float | None:
    """The CPU thermal zone in °C (``/sys/class/thermal/thermal_zone*/temp``, millidegrees)."""
    readings = []
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        raw = _read_path(zone / "temp")
        if raw and raw.lstrip("-").isdigit():
            kind = _read_path(zone / "type") or ""
            readings.append((kind not in CPU_ZONE_TYPES, int(raw) / 1000.0))
    return min(readings)[1] if readings else None


def throttled_flags(runner: Callable[..., Any] = subprocess.run) -> tuple[int, list[str]] | None:
    """``vcgencmd get_throttled`` decoded, or ``None`` when vcgencmd is absent or fails."""
    if shutil.which("vcgencmd") is None and runner is subprocess.run:
        return None
    try:
        out = runner(
            ["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2, check=False
        ).stdout
        value = int(out.strip().split("=", 1)[1], 16)
    except Exception:
        return None
    return value, [text for bit, text in THROTTLE_FLAGS.items() if value & (1 << bit)]


# ---------------------------------------------------------------------------------------------
# Camera
# ---------------------------------------------------------------------------------------------


def check_camera(
    root: Path = Path("/"), importer: Importer = importlib.import_module
) -> list[CheckResult]:
    """picamera2 + libcamera (and the cameras libcamera sees), V4L2 nodes."""
    results = []
    picamera2, err = _try_import(importer, "picamera2")
    if picamera2 is None:
        # Here, not at the top: the module needs numpy, and every edged command imports doctor.
        from edged.sources.picamera2 import import_hint

        libcam_missing = err is not None and "libcamera" in err
        results.append(
            CheckResult(
                "camera",
                "picamera2",
                "warn",
                f"not importable ({err})",
                (
                    "libcamera bindings are not visible: `sudo apt install python3-libcamera` "
                    "and a venv made with --system-site-packages"
                    if libcam_missing
                    else import_hint(err or "")
                ),
            )
        )
    else:
        version = installed_version(picamera2, "picamera2") or "unknown version"
        results.append(CheckResult("camera", "picamera2", "ok", version))
        libcamera, _ = _try_import(importer, "libcamera")
        lc_version = installed_version(libcamera, "libcamera") if libcamera else None
        results.append(
            CheckResult("camera", "libcamera", "ok", lc_version or "python bindings present")
        )
        try:
            cameras = list(picamera2.Picamera2.global_camera_info())
        except Exception as exc:
            cameras = None
            results.append(CheckResult("camera", "cameras", "warn", f"listing failed: {exc}"))
        if cameras is not None:
            if cameras:
                names = "; ".join(
                    f"picamera2:{i} {c.get('Model', '?')}" for i, c in enumerate(cameras)
                )
                results.append(CheckResult("camera", "cameras", "ok", names))
            else:
                results.append(
                    CheckResult(
                        "camera",
                        "cameras",
                        "warn",
                        "libcamera sees no camera",
                        "check the ribbon cable; `rpicam-hello --list-cameras`",
                    )
                )
    videos = sorted(p.name for p in (root / "dev").glob("video*"))
    results.append(
        CheckResult(
            "camera",
            "V4L2 devices",
            "ok" if videos else "info",
            ", ".join(f"/dev/{v}" for v in videos) if videos else "none",
        )
    )
    return results


# ---------------------------------------------------------------------------------------------
# Hailo
# ---------------------------------------------------------------------------------------------


def check_hailo(
    root: Path = Path("/"),
    importer: Importer = importlib.import_module,
    device_info: Callable[[ModuleType], dict[str, str]] | None = None,
) -> list[CheckResult]:
    """/dev/hailo*, HailoRT's Python package and version, chip identity and temperature."""
    nodes = sorted(p.name for p in (root / "dev").glob("hailo[0-9]*"))
    results = [_hailo_nodes_check(nodes)]
    hp, err = _try_import(importer, "hailo_platform")
    if hp is None:
        results.append(
            CheckResult(
                "hailo",
                "HailoRT",
                "warn" if nodes else "info",
                f"hailo_platform not importable ({err})",
                "`sudo apt install hailo-all`; venv with --system-site-packages",
            )
        )
        return results
    results.append(_hailort_version_check(hp))
    if nodes:
        results.extend(_hailo_chip_checks(hp, device_info))
    return results


def _hailo_nodes_check(nodes: list[str]) -> CheckResult:
    if nodes:
        return CheckResult("hailo", "device", "ok", ", ".join(f"/dev/{n}" for n in nodes))
    return CheckResult(
        "hailo",
        "device",
        "info",
        "no /dev/hailo* (no AI Kit / AI HAT+, or the hailo_pci driver is not loaded)",
        "with the hardware fitted: `sudo apt install hailo-all`, reboot, `dmesg | grep -i hailo`",
    )


def _hailort_version_check(hp: ModuleType) -> CheckResult:
    version = installed_version(hp, "hailort") or "unknown"
    too_old = (parse_version(version) or (0,)) < MIN_HAILORT
    return CheckResult(
        "hailo",
        "HailoRT",
        "fail" if too_old else "ok",
        version,
        f"edged needs HailoRT {'.'.join(map(str, MIN_HAILORT))}+" if too_old else "",
    )


def _hailo_chip_checks(
    hp: ModuleType, device_info: Callable[[ModuleType], dict[str, str]] | None
) -> list[CheckResult]:
    """The chip's identity (which HEFs it runs) and temperature, read over HailoRT."""
    if device_info is None:
        from edged.backends.hailo_device import hailo_device_info

        def device_info(module: ModuleType) -> dict[str, str]:
            return hailo_device_info(hailo_platform=module)

    try:
        info = device_info(hp)
    except Exception as exc:
        return [
            CheckResult(
                "hailo",
                "chip",
                "fail",
                f"cannot talk to the device: {exc}",
                "driver/firmware/HailoRT versions must match; reboot after `apt full-upgrade`",
            )
        ]
    arch = info.get("architecture", "unknown")
    hef = {"HAILO8L": "*_h8l.hef", "HAILO8": "*_h8.hef"}.get(arch)
    summary = f"{arch}, firmware {info.get('firmware', '?')}"
    if info.get("product"):
        summary += f", {info['product']}"
    results = [CheckResult("hailo", "chip", "ok", summary, f"use {hef} models" if hef else "")]
    if "temperature_c" in info:
        temp = float(info["temperature_c"])
        hot = temp >= HAILO_TEMP_WARN_C
        results.append(
            CheckResult(
                "hailo",
                "chip temperature",
                "warn" if hot else "ok",
                f"{temp:.1f} °C",
                "the NPU throttles when hot: improve airflow" if hot else "",
            )
        )
    return results


# ---------------------------------------------------------------------------------------------
# Runtimes
# ---------------------------------------------------------------------------------------------


def check_onnxruntime(importer: Importer = importlib.import_module) -> list[CheckResult]:
    ort, err = _try_import(importer, "onnxruntime")
    if ort is None:
        return [
            CheckResult(
                "runtime",
                "ONNX Runtime",
                "fail",
                f"not importable ({err})",
                "pip install onnxruntime",
            )
        ]
    providers = list(ort.get_available_providers())
    status: Status = "ok" if "CPUExecutionProvider" in providers else "warn"
    version = installed_version(ort, "onnxruntime") or "unknown"
    return [
        CheckResult("runtime", "ONNX Runtime", "ok", version),
        CheckResult("runtime", "ORT providers", status, ", ".join(providers) or "none"),
    ]


# What each optional CPU runtime can use on this CPU (the names its own API reports).
_NCNN_FEATURES = ("x86_avx", "x86_avx2", "arm_neon", "arm_vfpv4", "arm_asimdhp")


def check_cpu_runtimes(importer: Importer = importlib.import_module) -> list[CheckResult]:
    """OpenVINO and NCNN: installed or not, version, and the CPU features each will use
    (BF16/INT8 for OpenVINO; fp16 arithmetic — asimdhp — is what makes NCNN's fp16 fast on a
    Pi 5). Absent is ``info``: they are optional backends."""
    results: list[CheckResult] = []
    ov, err = _try_import(importer, "openvino")
    if ov is None:
        results.append(CheckResult("runtime", "OpenVINO", "info", f"not installed ({err})",
                                   "pip install 'edged[openvino]'"))  # fmt: skip
    else:
        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        results.append(CheckResult(
            "runtime", "OpenVINO", "ok",
            f"{(installed_version(ov, 'openvino') or 'unknown').split('-')[0]} on "
            f"{core.get_property('CPU', 'FULL_DEVICE_NAME')}: {', '.join(capabilities)}",
        ))  # fmt: skip
    ncnn, err = _try_import(importer, "ncnn")
    if ncnn is None:
        results.append(CheckResult("runtime", "NCNN", "info", f"not installed ({err})",
                                   "pip install 'edged[ncnn]'"))  # fmt: skip
    else:
        features = [name for name in _NCNN_FEATURES
                    if getattr(ncnn, f"cpu_support_{name}", lambda: 0)()]  # fmt: skip
        results.append(CheckResult(
            "runtime", "NCNN", "ok",
            f"{installed_version(ncnn, 'ncnn') or 'unknown'}, {ncnn.get_cpu_count()} CPUs: "
            f"{', '.join(features) or 'no SIMD extension reported'}",
        ))  # fmt: skip
    return results


def opencv_backends(cv2: ModuleType) -> dict[str, bool]:
    """Which capture back-ends this OpenCV build has (FFMPEG, V4L2, GSTREAMER).

    The build information's "Video I/O" section is authoritative (``videoio_registry`` also
    lists back-ends that exist only as absent plugins); the registry is the fallback.
    """
    wanted = {"FFMPEG": "FFMPEG", "GSTREAMER": "GSTREAMER", "V4L/V4L2": "V4L2", "V4L2": "V4L2"}
    found: dict[str, bool] = {}
    try:
        info = str(cv2.getBuildInformation())
    except Exception:
        info = ""
    section = info.split("Video I/O:", 1)[1] if "Video I/O:" in info else ""
    for line in section.splitlines()[1:]:
        if line.strip() and not line.startswith(" "):
            break  # the next top-level section
        key, _, value = line.strip().partition(":")
        name = wanted.get(key.strip().upper())
        if name:
            found[name] = found.get(name, False) or value.strip().upper().startswith("YES")
    if not found:
        registry = getattr(cv2, "videoio_registry", None)
        for backend in getattr(registry, "getBackends", list)():
            try:
                name = wanted.get(registry.getBackendName(backend).upper())
                if name:
                    found[name] = found.get(name, False) or bool(registry.hasBackend(backend))
            except Exception:
                continue
    return {name: found.get(name, False) for name in ("FFMPEG", "V4L2", "GSTREAMER")}


def check_opencv(importer: Importer = importlib.import_module) -> list[CheckResult]:
    cv2, err = _try_import(importer, "cv2")
    if cv2 is None:
        return [CheckResult("runtime", "OpenCV", "fail", f"not importable ({err})")]
    backends = opencv_backends(cv2)
    have = [name for name, ok in backends.items() if ok]
    missing = [name for name, ok in backends.items() if not ok]
    status: Status = "ok" if backends["FFMPEG"] else "warn"
    summary = f"videoio: {', '.join(have) or 'none'}"
    if missing:
        summary += f" (missing {', '.join(missing)})"
    return [
        CheckResult("runtime", "OpenCV", "ok", str(getattr(cv2, "__version__", "unknown"))),
        CheckResult(
            "runtime",
            "OpenCV video",
            status,
            summary,
            "" if backends["FFMPEG"] else "files and RTSP need FFMPEG in the OpenCV build",
        ),
    ]


def check_python() -> list[CheckResult]:
    venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    system_site = False
    if venv:
        cfg = Path(sys.prefix) / "pyvenv.cfg"
        with contextlib.suppress(OSError):
            system_site = "include-system-site-packages = true" in cfg.read_text().lower()
    where = "venv" if venv else "system interpreter"
    if venv:
        where += " with system site-packages" if system_site else " (isolated)"
    return [
        CheckResult(
            "runtime",
            "Python",
            "ok" if (not venv or system_site) else "info",
            f"{sys.version.split()[0]} ({where})",
            ""
            if (not venv or system_site)
            else "picamera2 and HailoRT come from apt: recreate the venv with "
            "--system-site-packages to use them",
        )
    ]


def run_checks(
    root: Path = Path("/"), importer: Importer = importlib.import_module
) -> list[CheckResult]:
    """Every check, in report order. A check that crashes becomes a ``fail`` line."""
    results: list[CheckResult] = []
    steps: Iterable[tuple[str, Callable[[], list[CheckResult]]]] = (
        ("board", lambda: check_board(root)),
        ("camera", lambda: check_camera(root, importer)),
        ("hailo", lambda: check_hailo(root, importer)),
        ("runtime", lambda: check_python()),
        ("runtime", lambda: check_onnxruntime(importer)),
        ("runtime", lambda: check_cpu_runtimes(importer)),
        ("runtime", lambda: check_opencv(importer)),
    )
    for area, step in steps:
        try:
            results.extend(step())
        except Exception as exc:  # a broken probe must not hide the others
            results.append(CheckResult(area, "check", "fail", f"{type(exc).__name__}: {exc}"))
    return results


def exit_code(results: Iterable[CheckResult]) -> int:
    return 1 if any(r.status == "fail" for r in results) else 0


# ---------------------------------------------------------------------------------------------
# Output and CLI
# ---------------------------------------------------------------------------------------------

_STYLE = {"ok": "green", "info": "cyan", "warn": "yellow", "fail": "bold red"}


def render(results: list[CheckResult], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="edged doctor", show_lines=False)
    table.add_column("area", style="dim")
    table.add_column("check")
    table.add_column("status")
    table.add_column("result")
    for r in results:
        result = r.summary if not r.hint else f"{r.summary}\n[dim]→ {r.hint}[/dim]"
        table.add_row(r.area, r.name, f"[{_STYLE[r.status]}]{r.status}[/]", result)
    console.print(table)


def cmd_doctor(args: argparse.Namespace) -> int:
    results = run_checks(Path(getattr(args, "root", "/") or "/"))
    if getattr(args, "json", False):
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        render(results)
    return exit_code(results)


def register_commands(subparsers: Any) -> None:
    """Add ``edged doctor`` to the CLI."""
    parser = subparsers.add_parser(
        "doctor",
        help="check camera, Hailo, runtimes and board state",
        description="Report what this machine offers edged: camera stack and cameras, Hailo "
        "device and HailoRT, ONNX Runtime providers, OpenCV video back-ends, Pi model, CPU "
        "governor, SoC temperature. Exit status 1 when something edged needs is broken.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)  # tests: a fake sysfs
    parser.set_defaults(func=cmd_doctor)
