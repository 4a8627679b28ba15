"""systemd/edged.service: the settings the daemon relies on, and `systemd-analyze verify`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edged.service_install import render_unit

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edged.service"
SHIPPED_EXEC = "/opt/edged/venv/bin/edged"
ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if Path("/usr/bin/systemd-analyze").exists() else None
)
needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze not installed (Debian package `systemd`; .ci/run installs it)",
)


def _settings(text: str) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` in order; repeated keys (DeviceAllow=) all kept."""
    section, out = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


SETTINGS = _settings(UNIT.read_text())


def _get(section: str, key: str) -> list[str]:
    return [v for s, k, v in SETTINGS if (s, k) == (section, key)]


def _one(section: str, key: str) -> str:
    values = _get(section, key)
    assert len(values) == 1, f"[{section}] {key}= set {len(values)} times"
    return values[0]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("Service", "Type", "notify"),
        ("Service", "NotifyAccess", "main"),
        ("Service", "ExecStart", f"{SHIPPED_EXEC} run --config /etc/edged/config.yaml"),
        ("Service", "ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Service", "Restart", "on-failure"),
        ("Service", "KillMode", "mixed"),
        ("Service", "User", "edged"),
        ("Service", "SupplementaryGroups", "video"),
        ("Service", "StateDirectory", "edged"),
        ("Service", "CacheDirectory", "edged"),  # rewritten models ($CACHE_DIRECTORY)
        ("Service", "RuntimeDirectory", "edged"),
        ("Service", "RuntimeDirectoryMode", "0700"),
        ("Service", "ConfigurationDirectory", "edged"),
        ("Service", "NoNewPrivileges", "yes"),
        ("Service", "ProtectSystem", "strict"),
        ("Service", "ProtectHome", "yes"),
        ("Service", "PrivateTmp", "yes"),
        ("Service", "DevicePolicy", "closed"),
        ("Install", "WantedBy", "multi-user.target"),
    ],
)
def test_key_settings(section: str, key: str, value: str) -> None:
    assert _one(section, key) == value


def test_watchdog_and_restart_policy() -> None:
    assert int(_one("Service", "WatchdogSec")) >= 10
    # Never give up on transient trouble (in [Unit]; in [Service] it is a deprecated alias),
    # but space the restarts and do not retry what a restart cannot fix.
    assert _one("Unit", "StartLimitIntervalSec") == "0"
    assert int(_one("Service", "RestartSec")) >= 10
    assert _one("Service", "RestartPreventExitStatus") == "2"
    assert int(_one("Service", "TimeoutStopSec")) > 0
    assert int(_one("Service", "LimitNOFILE")) >= 4096


def test_environment_unbuffered() -> None:
    assert "PYTHONUNBUFFERED=1" in _get("Service", "Environment")


def test_devices_for_camera_and_npu_are_allowed() -> None:
    allowed = {v.split()[0] for v in _get("Service", "DeviceAllow")}
    assert {
        "char-video4linux",  # /dev/video*, /dev/v4l-subdev*
        "char-media",  # /dev/media*
        "char-dma_heap",  # /dev/dma_heap/*
        "char-hailo*",  # /dev/hailo*
        "char-vchiq",
        "char-vcio",
    } <= allowed
    assert all(v.split()[1] == "rw" for v in _get("Service", "DeviceAllow"))


def test_nothing_that_breaks_devices_or_shared_memory() -> None:
    keys = {k for _, k, _ in SETTINGS}
    # A private /dev would hide the camera and NPU nodes.
    assert "PrivateDevices" not in keys
    # Would remap the video group to nobody and lose device access.
    assert "PrivateUsers" not in keys
    # psutil and ONNX Runtime read /proc/stat, /proc/meminfo, /proc/cpuinfo.
    assert "ProcSubset" not in keys
    # /dev/shm must stay writable: never listed as read-only or inaccessible.
    for key in ("ReadOnlyPaths", "InaccessiblePaths", "TemporaryFileSystem"):
        assert not any("/dev" in v for v in _get("Service", key))


def test_every_setting_is_explained() -> None:
    """Each [Service] block of settings is preceded by a comment saying why."""
    lines = UNIT.read_text().splitlines()
    section = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]" or not line or line.startswith("#"):
            continue
        block_start = i
        while (
            block_start > 0
            and lines[block_start - 1]
            and not lines[block_start - 1].startswith("#")
        ):
            block_start -= 1
        assert block_start > 0 and lines[block_start - 1].startswith("#"), (
            f"line {i + 1} ({line}) has no explaining comment above its block"
        )


# --- systemd-analyze ----------------------------------------------------------------------


def _verify(unit_text: str, tmp_path: Path, name: str = "edged.service") -> tuple[int, str]:
    path = tmp_path / name
    path.write_text(unit_text)
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def _with_existing_exec(unit_text: str) -> str:
    """ExecStart= pointed at a binary that exists here; arguments unchanged."""
    return re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable}", unit_text, count=1, flags=re.M)


def _complaints_about(output: str, name: str) -> list[str]:
    # Ignore noise about system units pulled in as dependencies; keep lines about ours.
    return [line for line in output.splitlines() if name in line]


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    rc, output = _verify(_with_existing_exec(UNIT.read_text()), tmp_path)
    assert rc == 0, output
    assert _complaints_about(output, "edged.service") == [], output


@needs_analyze
def test_shipped_unit_only_lacks_the_installed_binary(tmp_path: Path) -> None:
    """Verified as shipped, the single complaint is the venv that only an install creates."""
    if Path(SHIPPED_EXEC).exists():
        pytest.skip(f"{SHIPPED_EXEC} is installed here")
    rc, output = _verify(UNIT.read_text(), tmp_path)
    complaints = _complaints_about(output, "edged.service")
    assert rc != 0
    assert complaints and all(SHIPPED_EXEC in line for line in complaints), output


@needs_analyze
def test_rendered_unit_verifies(tmp_path: Path) -> None:
    rendered = render_unit(UNIT.read_text(), prefix=Path("/srv/cam/edged"), user="cam")
    rc, output = _verify(_with_existing_exec(rendered), tmp_path)
    assert rc == 0, output
    assert _complaints_about(output, "edged.service") == [], output


@needs_analyze
def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """Negative control: a typo in a key is reported, so the checks above mean something."""
    broken = _with_existing_exec(UNIT.read_text()).replace("WatchdogSec=", "WatchdogSecs=")
    _, output = _verify(broken, tmp_path)
    assert "WatchdogSecs" in output


@needs_analyze
def test_security_exposure_is_low(tmp_path: Path) -> None:
    path = tmp_path / "edged.service"
    path.write_text(_with_existing_exec(UNIT.read_text()))
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    if match is None:
        pytest.skip(f"systemd-analyze security --offline unsupported here: {result.stderr[:200]}")
    # 0 = fully confined … 10 = unconfined; "OK" starts below 4.0 (ours: ~1.8).
    assert float(match.group(1)) < 3.0, result.stdout
