"""`edged service install|uninstall`: the plans, the dry run, and the executor on a temp tree."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from edged import service_install as service
from edged.service_install import (
    CopyFile,
    CopyTree,
    HostFacts,
    InstallOptions,
    MakeDir,
    Note,
    Remove,
    Run,
    ServiceError,
    UninstallOptions,
    WriteFile,
    execute,
    plan_install,
    plan_uninstall,
    render_unit,
    service_groups,
)

REPO = Path(__file__).resolve().parents[2]
UNIT_TEMPLATE = (REPO / "systemd" / "edged.service").read_text()
FRESH_PI = HostFacts(existing_groups=frozenset({"video", "root", "users"}))


def _options(tmp_path: Path, **kw: object) -> InstallOptions:
    defaults: dict[str, object] = {
        "config_source": tmp_path / "pi5-cpu.yaml",
        "package": str(REPO),
        "unit_template": REPO / "systemd" / "edged.service",
    }
    defaults.update(kw)
    return InstallOptions(**defaults)  # type: ignore[arg-type]


def _runs(steps: list[object]) -> list[tuple[str, ...]]:
    return [s.argv for s in steps if isinstance(s, Run)]


def test_fresh_install_plan(tmp_path: Path) -> None:
    steps = plan_install(_options(tmp_path), FRESH_PI, UNIT_TEMPLATE)
    useradd, *runs = _runs(steps)
    # What the account must be, not the argv spelled out again: a system user with its own
    # group, home in the state dir (not created), no login shell, in the camera group.
    assert (useradd[0], useradd[-1]) == ("useradd", "edged")
    assert {"--system", "--user-group", "--no-create-home"} <= set(useradd)
    value_of = dict(pairwise(useradd))
    assert value_of["--home-dir"] == "/var/lib/edged"
    assert value_of["--shell"] == "/usr/sbin/nologin"
    assert value_of["--groups"] == "video"
    edged = "/opt/edged/venv/bin/edged"
    assert runs == [
        ("/usr/bin/python3", "-m", "venv", "--system-site-packages", "/opt/edged/venv"),
        ("/opt/edged/venv/bin/python", "-m", "pip", "install", "--upgrade", "/opt/edged/src"),
        ("ln", "-sfn", edged, "/usr/local/bin/edged"),
        ("runuser", "-u", "edged", "--", edged, "models", "--models-dir", "/var/lib/edged/models",
         "fetch", "yolov5n"),
        (edged, "config", "check", "/etc/edged/config.yaml"),  # before the unit is enabled
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "edged.service"),
        ("systemctl", "restart", "edged.service"),
    ]  # fmt: skip
    assert Run(runs[3], check=False) in steps  # offline: the config check says what is missing
    # The source tree is staged into a root-owned copy before pip builds it.
    stage = [s for s in steps if isinstance(s, CopyTree)]
    assert stage == [CopyTree(REPO, Path("/opt/edged/src"))]
    copies = [s for s in steps if isinstance(s, CopyFile)]
    manifests = sorted((REPO / "models").glob("*.yaml"))
    assert {m.name for m in manifests} >= {"yolov5n.yaml", "yolov8s-hailo.yaml"}
    assert copies == [
        *(CopyFile(m, Path("/var/lib/edged/models") / m.name, 0o640, "edged", "edged")
          for m in manifests),
        CopyFile(tmp_path / "pi5-cpu.yaml", Path("/etc/edged/config.yaml"), 0o640, group="edged"),
    ]  # fmt: skip
    (unit,) = [s for s in steps if isinstance(s, WriteFile)]
    assert unit.path == Path("/etc/systemd/system/edged.service")
    assert unit.mode == 0o644
    assert "ExecStart=/opt/edged/venv/bin/edged run --config /etc/edged/config.yaml" in unit.content
    dirs = {s.path: s for s in steps if isinstance(s, MakeDir)}
    assert dirs[Path("/var/lib/edged")] == MakeDir(Path("/var/lib/edged"), 0o750, "edged", "edged")
    # Order matters: the user exists before its directories, the unit before daemon-reload.
    kinds = [type(s).__name__ for s in steps]
    assert kinds.index("Run") < kinds.index("MakeDir")
    assert steps.index(unit) < next(
        i for i, s in enumerate(steps) if isinstance(s, Run) and s.argv[1:] == ("daemon-reload",)
    )


def test_upgrade_keeps_user_and_config(tmp_path: Path) -> None:
    facts = HostFacts(
        user_exists=True,
        existing_groups=frozenset({"video", "hailo"}),
        config_exists=True,
        unit_installed=True,
    )
    steps = plan_install(_options(tmp_path), facts, UNIT_TEMPLATE)
    runs = _runs(steps)
    assert ("usermod", "--append", "--groups", "hailo,video", "edged") in runs
    assert not any(r[0] == "useradd" for r in runs)
    assert not any(isinstance(s, CopyFile) and s.dst.parent == Path("/etc/edged") for s in steps)
    assert any(isinstance(s, Note) and "keeping the existing" in s.text for s in steps)


def test_an_upgrade_keeps_the_manifests_there_and_fetches_again(tmp_path: Path) -> None:
    """The fetch is asked for again (a no-op when the file is there): after an offline first
    install, running the installer once online is the way to get the model."""
    facts = HostFacts(user_exists=True, existing_groups=frozenset({"video"}), config_exists=True,
                      existing_manifests=frozenset({"yolov5n.yaml"}))  # fmt: skip
    steps = plan_install(_options(tmp_path), facts, UNIT_TEMPLATE)
    copied = {s.dst.name for s in steps if isinstance(s, CopyFile)}
    assert "yolov5n.yaml" not in copied and "yolov8s-hailo.yaml" in copied
    assert Note("keeping the existing /var/lib/edged/models/yolov5n.yaml") in steps
    assert any(r[-2:] == ("fetch", "yolov5n") for r in _runs(steps))


def test_a_system_numpy_1_keeps_the_venv_on_numpy_1(tmp_path: Path) -> None:
    """Bookworm's apt picamera2 is built against numpy 1.24; numpy 2 in the venv breaks it."""
    facts = HostFacts(existing_groups=frozenset({"video"}), system_numpy="1.24.2")
    steps = plan_install(_options(tmp_path), facts, UNIT_TEMPLATE)
    (constraints,) = [s for s in steps if isinstance(s, WriteFile) and s.path.suffix == ".txt"]
    assert constraints.path == Path("/opt/edged/constraints.txt")
    assert "numpy<2" in constraints.content.splitlines()
    pip = next(r for r in _runs(steps) if r[1:4] == ("-m", "pip", "install"))
    assert pip[-3:] == ("--constraint", "/opt/edged/constraints.txt", "/opt/edged/src")
    assert steps.index(constraints) < next(i for i, s in enumerate(steps)
                                           if isinstance(s, Run) and s.argv == pip)  # fmt: skip
    numpy2 = HostFacts(existing_groups=frozenset({"video"}), system_numpy="2.2.4")
    assert not any("--constraint" in r for r in _runs(plan_install(_options(tmp_path), numpy2,
                                                                    UNIT_TEMPLATE)))  # fmt: skip


def test_a_foreign_edged_on_the_path_is_left_alone(tmp_path: Path) -> None:
    facts = HostFacts(existing_groups=frozenset({"video"}), cli_link="foreign")
    steps = plan_install(_options(tmp_path), facts, UNIT_TEMPLATE)
    assert not any(r[0] == "ln" for r in _runs(steps))
    assert any(isinstance(s, Note) and "/usr/local/bin/edged" in s.text for s in steps)


def test_groups_follow_the_device_owners() -> None:
    facts = HostFacts(
        existing_groups=frozenset({"video", "render"}),
        device_groups=frozenset({"video", "npu"}),  # e.g. /dev/hailo0 root:npu 0660
    )
    assert service_groups(facts) == ["npu", "video"]
    assert service_groups(FRESH_PI) == ["video"]


def test_missing_video_group_is_created(tmp_path: Path) -> None:
    steps = plan_install(_options(tmp_path), HostFacts(), UNIT_TEMPLATE)
    assert _runs(steps)[0] == ("groupadd", "--system", "video")


def test_custom_prefix_user_wheel_no_start(tmp_path: Path) -> None:
    wheel = "/tmp/edged-0.1.0-py3-none-any.whl"
    opts = _options(
        tmp_path,
        prefix=Path("/srv/cam/edged"),
        user="cam",
        package=wheel,
        start=False,
        system_site_packages=False,
        python="/usr/bin/python3.11",
    )
    steps = plan_install(opts, FRESH_PI, UNIT_TEMPLATE)
    runs = _runs(steps)
    assert ("/usr/bin/python3.11", "-m", "venv", "/srv/cam/edged/venv") in runs
    assert (
        "/srv/cam/edged/venv/bin/python",
        "-m",
        "pip",
        "install",
        "--upgrade",
        wheel,
    ) in runs
    assert not any(isinstance(s, CopyTree) for s in steps)  # a wheel is not staged
    assert ("systemctl", "restart", "edged.service") not in runs
    assert runs[0][-1] == "cam"
    (unit,) = [s for s in steps if isinstance(s, WriteFile)]
    assert "ExecStart=/srv/cam/edged/venv/bin/edged run --config /etc/edged/config.yaml" in (
        unit.content
    )
    assert "\nUser=cam\n" in unit.content
    assert "\nGroup=cam\n" in unit.content


def test_render_unit_changes_only_those_lines() -> None:
    rendered = render_unit(UNIT_TEMPLATE, prefix=Path("/opt/x"), user="u")
    before, after = UNIT_TEMPLATE.splitlines(), rendered.splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [
        (
            "ExecStart=/opt/edged/venv/bin/edged run --config /etc/edged/config.yaml",
            "ExecStart=/opt/x/venv/bin/edged run --config /etc/edged/config.yaml",
        ),
        ("User=edged", "User=u"),
        ("Group=edged", "Group=u"),
    ]
    assert render_unit(UNIT_TEMPLATE, prefix=Path("/opt/edged"), user="edged") == UNIT_TEMPLATE


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("opt/edged", "absolute"),
        ("/opt", "too close to /"),
        ("/home/pi/edged", "ProtectHome"),
        ("/root/edged", "ProtectHome"),
    ],
)
def test_bad_prefixes_are_refused(tmp_path: Path, prefix: str, message: str) -> None:
    with pytest.raises(ServiceError, match=message):
        plan_install(_options(tmp_path, prefix=Path(prefix)), FRESH_PI, UNIT_TEMPLATE)
    with pytest.raises(ServiceError, match=message):
        plan_uninstall(UninstallOptions(prefix=Path(prefix)), FRESH_PI)


def test_uninstall_keeps_config_state_and_user() -> None:
    facts = HostFacts(user_exists=True, unit_installed=True)
    steps = plan_uninstall(UninstallOptions(), facts)
    assert steps[0] == Run(("systemctl", "disable", "--now", "edged.service"), check=False)
    removed = [s for s in steps if isinstance(s, Remove)]
    assert removed == [
        Remove(Path("/etc/systemd/system/edged.service")),
        Remove(Path("/opt/edged/venv"), "tree"),
        Remove(Path("/opt/edged/src"), "tree"),
        Remove(Path("/opt/edged"), "empty-dir"),
    ]
    assert not any(r[0] == "userdel" for r in _runs(steps))


def test_uninstall_purge() -> None:
    steps = plan_uninstall(UninstallOptions(purge=True), HostFacts(user_exists=True))
    removed = {s.path: s.kind for s in steps if isinstance(s, Remove)}
    assert removed[Path("/etc/edged")] == "tree"
    assert removed[Path("/var/lib/edged")] == "tree"
    assert removed[Path("/var/cache/edged")] == "tree"
    assert removed[Path("/etc/systemd/system/edged.service.d")] == "tree"  # systemctl edit's
    assert Path("/usr/local/bin/edged") not in removed  # not ours (no fact says so)
    ours = HostFacts(user_exists=True, cli_link="ours")
    assert Remove(Path("/usr/local/bin/edged")) in plan_uninstall(UninstallOptions(), ours)
    assert Run(("userdel", "edged"), check=False) in steps


# --- the command line: dry runs change nothing ---------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edged")
    sub = parser.add_subparsers(dest="command")
    service.register_commands(sub)
    return parser


def test_cli_dry_run_prints_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # dry runs need no root
    config = tmp_path / "site.yaml"
    config.write_text("camera_id: porch\n")
    args = _parser().parse_args(
        ["service", "install", "--dry-run", "--config", str(config), "--prefix", "/opt/edgedtest"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert all(line.startswith("[dry-run] ") for line in out)
    text = "\n".join(out)
    assert "run     /usr/bin/python3 -m venv --system-site-packages /opt/edgedtest/venv" in text
    assert "write   /etc/systemd/system/edged.service" in text
    assert "run     systemctl enable edged.service" in text
    if not Path("/etc/edged/config.yaml").exists():
        assert f"copy    {config} -> /etc/edged/config.yaml" in text
    assert not Path("/opt/edgedtest").exists()


def test_cli_uninstall_dry_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    args = _parser().parse_args(["service", "uninstall", "--dry-run", "--purge"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "[dry-run] remove  /var/lib/edged (whole tree)" in text


def test_cli_refuses_to_run_without_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    def no_execution(*a: object, **k: object) -> None:
        raise AssertionError("must not execute without root")

    monkeypatch.setattr(service, "execute", no_execution)
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    for argv in (
        ["service", "install", "--config", str(config)],
        ["service", "uninstall"],
    ):
        args = _parser().parse_args(argv)
        assert args.func(args) == 1
        assert "must run as root (try: sudo" in capsys.readouterr().err


def test_cli_requires_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["service"])
    assert "install,uninstall" in capsys.readouterr().err


def test_install_sh_dry_run(tmp_path: Path) -> None:
    """The wrapper script runs the same code with only the standard library."""
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    result = subprocess.run(
        [
            "sh",
            str(REPO / "systemd" / "install.sh"),
            "install",
            "--dry-run",
            "--no-start",
            "--config",
            str(config),
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"run     {sys.executable} -m venv --system-site-packages /opt/edged/venv" in (
        result.stdout
    )
    assert "systemctl restart" not in result.stdout
    assert "not started (--no-start)" in result.stdout


# --- the executor, on a temporary tree -----------------------------------------------------


class FakeRunner:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail or set()

    def __call__(self, argv: list[str], check: bool = False) -> subprocess.CompletedProcess[bytes]:
        self.calls.append(argv)
        return subprocess.CompletedProcess(argv, 1 if argv[0] in self.fail else 0)


def test_execute_performs_each_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src_tree = tmp_path / "checkout"
    (src_tree / "edged").mkdir(parents=True)
    (src_tree / "edged" / "x.py").write_text("x = 1\n")
    (src_tree / ".git").mkdir()
    (src_tree / "models").mkdir()
    (src_tree / "models" / "big.onnx").write_bytes(b"\0")
    config = tmp_path / "config.yaml"
    config.write_text("camera_id: x\n")
    me = os.getuid()
    runner = FakeRunner()
    steps = [
        MakeDir(tmp_path / "etc", 0o750),
        CopyFile(config, tmp_path / "etc" / "config.yaml", 0o640),
        CopyTree(src_tree, tmp_path / "src"),
        WriteFile(tmp_path / "unit.service", "[Unit]\n", 0o644, "test"),
        Run(("true", "arg")),
        Remove(tmp_path / "gone"),  # missing: skipped
        Note("done"),
    ]
    execute(steps, dry_run=False, out=sys.stdout, runner=runner)
    assert (tmp_path / "etc").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "etc" / "config.yaml").read_text() == "camera_id: x\n"
    assert (tmp_path / "etc" / "config.yaml").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "etc" / "config.yaml").stat().st_uid == me
    assert (tmp_path / "src" / "edged" / "x.py").exists()
    assert not (tmp_path / "src" / ".git").exists()
    assert not (tmp_path / "src" / "models" / "big.onnx").exists()
    assert (tmp_path / "unit.service").read_text() == "[Unit]\n"
    assert runner.calls == [["true", "arg"]]
    assert capsys.readouterr().out.count("\n") == len(steps)


def test_execute_dry_run_touches_nothing(tmp_path: Path) -> None:
    runner = FakeRunner()
    steps = [
        MakeDir(tmp_path / "d", 0o755),
        WriteFile(tmp_path / "f", "x", 0o644, "test"),
        Run(("rm", "-rf", "/")),
        Remove(tmp_path, "tree"),
    ]
    execute(steps, dry_run=True, out=sys.stdout, runner=runner)
    assert runner.calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert tmp_path.exists()


def test_execute_stops_on_a_failed_command(tmp_path: Path) -> None:
    runner = FakeRunner(fail={"useradd", "systemctl"})
    steps = [
        Run(("systemctl", "reset-failed", "edged.service"), check=False),  # ignored
        Run(("useradd", "edged")),
        WriteFile(tmp_path / "never", "x", 0o644, "test"),
    ]
    with pytest.raises(ServiceError, match=r"command failed .*useradd edged"):
        execute(steps, dry_run=False, out=sys.stdout, runner=runner)
    assert not (tmp_path / "never").exists()


def test_execute_removals(tmp_path: Path) -> None:
    tree = tmp_path / "venv" / "bin"
    tree.mkdir(parents=True)
    (tree / "python").write_text("")
    keep = tmp_path / "prefix-with-other-files"
    keep.mkdir()
    (keep / "mine.txt").write_text("")
    empty = tmp_path / "empty"
    empty.mkdir()
    steps = [
        Remove(tmp_path / "venv", "tree"),
        Remove(keep, "empty-dir"),
        Remove(empty, "empty-dir"),
    ]
    execute(steps, dry_run=False, out=sys.stdout, runner=FakeRunner())
    assert not (tmp_path / "venv").exists()
    assert (keep / "mine.txt").exists()
    assert not empty.exists()


def test_missing_config_file_is_an_error_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        service, "probe_host", lambda *a, **k: HostFacts(existing_groups=frozenset({"video"}))
    )
    executed: list[object] = []
    monkeypatch.setattr(service, "execute", lambda *a, **k: executed.append(a))
    args = _parser().parse_args(["service", "install", "--config", str(tmp_path / "nope.yaml")])
    assert args.func(args) == 1
    assert "config to install does not exist" in capsys.readouterr().err
    assert executed == []


def test_probe_reads_manifests_the_cli_link_and_numpy_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models, link, prefix = tmp_path / "models", tmp_path / "bin" / "edged", tmp_path / "opt"
    models.mkdir()
    (models / "yolov5n.yaml").write_text("name: yolov5n\n")
    (models / "yolov5n.onnx").write_bytes(b"")  # not a manifest
    link.parent.mkdir()
    monkeypatch.setattr(service, "MODELS_DIR", models)
    monkeypatch.setattr(service, "CLI_LINK", link)
    facts = service.probe_host("nobody-here", prefix)
    assert facts.existing_manifests == frozenset({"yolov5n.yaml"})
    assert facts.cli_link == "absent" and facts.system_numpy is None  # no python: no probe
    (prefix / "venv" / "bin").mkdir(parents=True)
    (prefix / "venv" / "bin" / "edged").write_text("")
    link.symlink_to(prefix / "venv" / "bin" / "edged")
    assert service.probe_host("nobody-here", prefix).cli_link == "ours"
    assert service.probe_host("nobody-here", tmp_path / "other").cli_link == "foreign"
    numpy_here = service.probe_host("nobody-here", prefix, python=sys.executable).system_numpy
    import numpy

    assert numpy_here == numpy.__version__
