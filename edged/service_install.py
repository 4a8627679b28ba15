"""``edged service install|uninstall``: deploy edged as a systemd service on a Pi.

Planning and doing are separate: :func:`probe_host` gathers the few facts the plan depends on
(does the user exist, which groups own the camera and NPU nodes, is there a config already),
:func:`plan_install` / :func:`plan_uninstall` turn options + facts into a list of steps
(pure functions, tested directly), and :func:`execute` prints each step and — unless it is a
dry run — performs it.

This module uses the standard library only, so ``systemd/install.sh`` can run it with the
system Python before edged or any of its dependencies is installed anywhere.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

UNIT_NAME = "edged.service"
UNIT_PATH = Path("/etc/systemd/system") / UNIT_NAME
CONFIG_DIR = Path("/etc/edged")
CONFIG_PATH = CONFIG_DIR / "config.yaml"
STATE_DIR = Path("/var/lib/edged")
MODELS_DIR = STATE_DIR / "models"
CACHE_DIR = Path("/var/cache/edged")
DROP_IN_DIR = Path("/etc/systemd/system/edged.service.d")  # `systemctl edit edged` writes here
CLI_LINK = Path("/usr/local/bin/edged")  # `edged ctl`, `edged doctor` on the PATH
DEFAULT_MODEL = "yolov5n"  # the model the shipped configs name; fetched on a first install
# Raspberry Pi OS bookworm's picamera2 stack (python3-simplejpeg, python3-picamera2) is built
# against its numpy 1.x; a numpy 2 in the venv breaks `import picamera2` ("numpy.dtype size
# changed"), and current opencv-python-headless wheels pull numpy 2 in.
NUMPY1_CONSTRAINTS = "numpy<2\nopencv-python-headless<4.12\n"
DEFAULT_PREFIX = Path("/opt/edged")
DEFAULT_USER = "edged"
DEFAULT_PYTHON = "/usr/bin/python3"
# The unit lists SupplementaryGroups=video, so the group must exist (Debian always has it).
CAMERA_GROUP = "video"
# Groups that may own /dev/hailo* when an admin replaced HailoRT's world-writable udev rule.
HAILO_GROUPS = ("hailo",)
# Device nodes the pipeline opens; whichever group owns them (if not root) is added too.
DEVICE_GLOBS = (
    "/dev/video*",
    "/dev/media*",
    "/dev/v4l-subdev*",
    "/dev/dma_heap/*",
    "/dev/hailo*",
    "/dev/vchiq",
    "/dev/vcio",
)
# Not copied when staging a source checkout: VCS data, environments, build output, weights.
_STAGE_IGNORE = (
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    "runs",
    "test-artifacts",
    "*.onnx",
    "*.hef",
    "*.pt",
)
# ProtectHome=yes hides these from the service: a prefix there could never start.
_HIDDEN_BY_PROTECT_HOME = (Path("/home"), Path("/root"), Path("/run/user"))


class ServiceError(RuntimeError):
    """A problem the user must fix before installing (message says what to do)."""


# --- steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Run a command; with ``check=False`` a failure is reported and ignored."""

    argv: tuple[str, ...]
    check: bool = True

    def describe(self) -> str:
        return "run     " + shlex.join(self.argv) + ("" if self.check else "   (may fail)")


@dataclass(frozen=True)
class MakeDir:
    path: Path
    mode: int
    owner: str | None = None
    group: str | None = None

    def describe(self) -> str:
        return f"mkdir   {self.path} (mode {self.mode:04o}{_ownership(self.owner, self.group)})"


@dataclass(frozen=True)
class CopyFile:
    src: Path
    dst: Path
    mode: int
    owner: str | None = None
    group: str | None = None

    def describe(self) -> str:
        return (
            f"copy    {self.src} -> {self.dst} "
            f"(mode {self.mode:04o}{_ownership(self.owner, self.group)})"
        )


@dataclass(frozen=True)
class CopyTree:
    """Copy a source checkout (minus :data:`_STAGE_IGNORE`) to a fresh directory."""

    src: Path
    dst: Path

    def describe(self) -> str:
        return f"copy    {self.src}/ -> {self.dst}/ (source tree, without .git/.venv/build/weights)"


@dataclass(frozen=True)
class WriteFile:
    path: Path
    content: str = field(repr=False)
    mode: int
    origin: str

    def describe(self) -> str:
        return f"write   {self.path} (mode {self.mode:04o}; {self.origin})"


@dataclass(frozen=True)
class Remove:
    """Delete a file (``file``), a directory tree (``tree``) or an empty directory (``empty-dir``).

    Missing paths are skipped; a non-empty ``empty-dir`` is kept (something else lives there).
    """

    path: Path
    kind: Literal["file", "tree", "empty-dir"] = "file"

    def describe(self) -> str:
        suffix = {"file": "", "tree": " (whole tree)", "empty-dir": " (if empty)"}[self.kind]
        return f"remove  {self.path}{suffix}"


@dataclass(frozen=True)
class Note:
    """Nothing to do; explains a decision (e.g. an existing config is kept)."""

    text: str

    def describe(self) -> str:
        return f"note    {self.text}"


Step = Run | MakeDir | CopyFile | CopyTree | WriteFile | Remove | Note


def _ownership(owner: str | None, group: str | None) -> str:
    return f", {owner or 'root'}:{group or owner or 'root'}" if owner or group else ""


# --- facts and options -----------------------------------------------------------------


@dataclass(frozen=True)
class HostFacts:
    """What the plan depends on, gathered by :func:`probe_host` (or made up in tests)."""

    user_exists: bool = False
    existing_groups: frozenset[str] = frozenset()
    device_groups: frozenset[str] = frozenset()
    config_exists: bool = False
    unit_installed: bool = False
    systemd_running: bool = True
    system_numpy: str | None = None  # numpy version the system Python has (None: none)
    existing_manifests: frozenset[str] = frozenset()  # *.yaml already in MODELS_DIR
    cli_link: Literal["absent", "ours", "foreign"] = "absent"  # what is at CLI_LINK


@dataclass(frozen=True)
class InstallOptions:
    prefix: Path = DEFAULT_PREFIX
    user: str = DEFAULT_USER
    unit_template: Path | None = None
    config_source: Path | None = None
    package: str | None = None
    python: str = DEFAULT_PYTHON
    system_site_packages: bool = True
    start: bool = True


@dataclass(frozen=True)
class UninstallOptions:
    prefix: Path = DEFAULT_PREFIX
    user: str = DEFAULT_USER
    purge: bool = False


def source_root() -> Path | None:
    """The checkout this module runs from (``pyproject.toml`` of edged next to it), if any."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text()
    except OSError:
        return None
    return root if 'name = "edged"' in text else None


def _system_numpy(python: str) -> str | None:
    try:
        done = subprocess.run([python, "-c", "import numpy; print(numpy.__version__)"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def probe_host(user: str, prefix: Path = DEFAULT_PREFIX, python: str | None = None) -> HostFacts:
    """Read the facts from this machine (users, groups, device nodes, installed files); with
    ``python``, also the numpy that interpreter has (a subprocess: only an install into a venv
    that sees the system's packages needs it)."""
    try:
        pwd.getpwnam(user)
        user_exists = True
    except KeyError:
        user_exists = False
    existing = frozenset(g.gr_name for g in grp.getgrall())
    owners: set[str] = set()
    for pattern in DEVICE_GLOBS:
        for node in Path("/").glob(pattern.lstrip("/")):
            try:
                gid = node.stat().st_gid
                if gid != 0:
                    owners.add(grp.getgrgid(gid).gr_name)
            except (OSError, KeyError):
                continue
    return HostFacts(
        user_exists=user_exists,
        existing_groups=existing,
        device_groups=frozenset(owners),
        config_exists=CONFIG_PATH.exists(),
        unit_installed=UNIT_PATH.exists(),
        systemd_running=Path("/run/systemd/system").is_dir(),
        system_numpy=_system_numpy(python) if python else None,
        existing_manifests=frozenset(p.name for p in MODELS_DIR.glob("*.yaml")),
        cli_link=_cli_link_state(prefix),
    )


def _cli_link_state(prefix: Path) -> Literal["absent", "ours", "foreign"]:
    if not CLI_LINK.exists() and not CLI_LINK.is_symlink():
        return "absent"
    ours = (prefix / "venv" / "bin" / "edged").resolve()
    return "ours" if CLI_LINK.is_symlink() and CLI_LINK.resolve() == ours else "foreign"


def needs_numpy1(system_numpy: str | None) -> bool:
    """True when the system's numpy is 1.x: the venv must keep to it (see NUMPY1_CONSTRAINTS)."""
    return system_numpy is not None and system_numpy.split(".")[0] == "1"


def service_groups(facts: HostFacts) -> list[str]:
    """Supplementary groups for the service user: camera, Hailo, and device owners."""
    groups = {CAMERA_GROUP} | set(facts.device_groups)
    groups |= {g for g in HAILO_GROUPS if g in facts.existing_groups}
    return sorted(groups)


def check_prefix(prefix: Path) -> None:
    """Refuse prefixes that are relative, too shallow to delete safely, or hidden by systemd."""
    if not prefix.is_absolute():
        raise ServiceError(f"--prefix must be an absolute path, not {prefix}")
    if len(prefix.parts) < 3:
        raise ServiceError(f"--prefix {prefix} is too close to / (use e.g. {DEFAULT_PREFIX})")
    for hidden in _HIDDEN_BY_PROTECT_HOME:
        if prefix == hidden or hidden in prefix.parents:
            raise ServiceError(
                f"--prefix {prefix} is under {hidden}, which the unit hides (ProtectHome=yes); "
                f"use a path like {DEFAULT_PREFIX}"
            )


def render_unit(template: str, *, prefix: Path, user: str) -> str:
    """The shipped unit with ``ExecStart=``, ``User=`` and ``Group=`` set for this install."""
    replacements = {
        "ExecStart": f"{prefix}/venv/bin/edged run --config {CONFIG_PATH}",
        "User": user,
        "Group": user,
    }
    lines = []
    for line in template.splitlines():
        key, sep, _ = line.partition("=")
        if sep and key in replacements:
            line = f"{key}={replacements[key]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# --- plans ---------------------------------------------------------------------------------


def plan_install(options: InstallOptions, facts: HostFacts, unit_template: str) -> list[Step]:
    """Every step of an install or upgrade, in order (idempotent: safe to run again)."""
    check_prefix(options.prefix)
    if options.config_source is None:
        raise ServiceError("no config to install: pass --config FILE")
    if options.package is None:
        raise ServiceError("nothing to pip install: pass --from PATH|WHEEL|SPEC")
    venv = options.prefix / "venv"
    edged = str(venv / "bin" / "edged")
    local_tree = Path(options.package)
    return [
        *_account_steps(facts, options.user),
        *_venv_steps(options, facts, venv),
        *_cli_link_steps(facts, edged),
        *_model_steps(local_tree if local_tree.is_dir() else None, facts, options.user, edged),
        *_config_steps(options, facts, edged),
        *_unit_steps(options, unit_template),
    ]


def _account_steps(facts: HostFacts, user: str) -> list[Step]:
    """The service user in its groups, and the state and model directories it owns."""
    groups = service_groups(facts)
    steps: list[Step] = []
    if CAMERA_GROUP not in facts.existing_groups:
        steps.append(Run(("groupadd", "--system", CAMERA_GROUP)))
    if facts.user_exists:
        steps.append(Run(("usermod", "--append", "--groups", ",".join(groups), user)))
    else:
        steps.append(
            Run(
                (
                    "useradd",
                    "--system",
                    "--user-group",
                    "--home-dir",
                    str(STATE_DIR),
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--comment",
                    "edged camera inference daemon",
                    "--groups",
                    ",".join(groups),
                    user,
                )
            )
        )
    # systemd creates the state dir on start too; creating it now lets models be copied first.
    steps.append(MakeDir(STATE_DIR, 0o750, owner=user, group=user))
    steps.append(MakeDir(MODELS_DIR, 0o750, owner=user, group=user))
    return steps


def _venv_steps(options: InstallOptions, facts: HostFacts, venv: Path) -> list[Step]:
    """The virtualenv under the prefix, and edged pip-installed into it."""
    assert options.package is not None
    prefix = options.prefix
    steps: list[Step] = [MakeDir(prefix, 0o755)]
    venv_cmd = [options.python, "-m", "venv"]
    # picamera2/libcamera and HailoRT's Python bindings come from apt (python3-picamera2,
    # python3-hailort), not PyPI: the venv must see the system site-packages.
    if options.system_site_packages:
        venv_cmd.append("--system-site-packages")
    steps.append(Run((*venv_cmd, str(venv))))
    package = options.package
    local_tree = Path(package)
    if local_tree.is_dir():
        # Build from a root-owned copy: an in-tree build would leave root-owned build/ and
        # *.egg-info in the user's checkout.
        staged = prefix / "src"
        steps.append(Remove(staged, "tree"))
        steps.append(CopyTree(local_tree.resolve(), staged))
        package = str(staged)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--upgrade"]
    if options.system_site_packages and needs_numpy1(facts.system_numpy):
        constraints = prefix / "constraints.txt"
        steps.append(WriteFile(constraints, NUMPY1_CONSTRAINTS, 0o644,
                               f"numpy<2: the apt picamera2 stack is built against the "
                               f"system's numpy {facts.system_numpy}"))  # fmt: skip
        pip += ["--constraint", str(constraints)]
    steps.append(Run((*pip, package)))
    return steps


def _cli_link_steps(facts: HostFacts, edged: str) -> list[Step]:
    if facts.cli_link == "foreign":
        return [Note(f"keeping {CLI_LINK} (not a link to this install): use {edged}")]
    return [Run(("ln", "-sfn", edged, str(CLI_LINK)))]


def _config_steps(options: InstallOptions, facts: HostFacts, edged: str) -> list[Step]:
    """/etc/edged/config.yaml (an existing one is kept), then `edged config check` on it."""
    assert options.config_source is not None
    steps: list[Step] = [MakeDir(CONFIG_DIR, 0o755)]
    if facts.config_exists:
        steps.append(Note(f"keeping the existing {CONFIG_PATH} (not overwritten)"))
    else:
        steps.append(CopyFile(options.config_source, CONFIG_PATH, 0o640, group=options.user))
    # The model the config names must be there, or the first start fails (exit 2, which the
    # unit does not retry): stop before the unit is enabled, with check's one-line reason.
    steps.append(Run((edged, "config", "check", str(CONFIG_PATH))))
    return steps


def _unit_steps(options: InstallOptions, unit_template: str) -> list[Step]:
    """The rendered unit, enabled, and (unless --no-start) started or restarted."""
    origin = f"rendered from {options.unit_template or 'the shipped unit'}"
    rendered = render_unit(unit_template, prefix=options.prefix, user=options.user)
    steps: list[Step] = [
        WriteFile(UNIT_PATH, rendered, 0o644, origin),
        Run(("systemctl", "daemon-reload")),
        Run(("systemctl", "enable", UNIT_NAME)),
    ]
    if options.start:
        # restart = start, or pick up the new code/unit on an upgrade.
        steps.append(Run(("systemctl", "restart", UNIT_NAME)))
        steps.append(Note(f"follow it with: systemctl status {UNIT_NAME}; journalctl -u edged -f"))
    else:
        steps.append(Note(f"not started (--no-start): systemctl start {UNIT_NAME}"))
    return steps


def _model_steps(tree: Path | None, facts: HostFacts, user: str, edged: str) -> list[Step]:
    """Manifests from a source checkout (one already there is kept as it is), and the default
    model's FP32 file whenever its manifest is in place (`models fetch`: nothing to do when the
    file is there; offline it fails and says so, and the config check after it names what is
    missing; run the installer again once online)."""
    steps: list[Step] = []
    manifests = sorted((tree / "models").glob("*.yaml")) if tree is not None else []
    for manifest in manifests:
        if manifest.name in facts.existing_manifests:
            steps.append(Note(f"keeping the existing {MODELS_DIR / manifest.name}"))
        else:
            steps.append(CopyFile(manifest, MODELS_DIR / manifest.name, 0o640, user, user))
    default = f"{DEFAULT_MODEL}.yaml"
    if default in facts.existing_manifests or any(m.name == default for m in manifests):
        steps.append(Run(("runuser", "-u", user, "--", edged, "models", "--models-dir",
                          str(MODELS_DIR), "fetch", DEFAULT_MODEL), check=False))  # fmt: skip
    return steps


def plan_uninstall(options: UninstallOptions, facts: HostFacts) -> list[Step]:
    """Stop, disable and remove the service; keep config, state and user unless ``purge``."""
    check_prefix(options.prefix)
    steps: list[Step] = []
    if facts.unit_installed:
        steps.append(Run(("systemctl", "disable", "--now", UNIT_NAME), check=False))
    steps.append(Remove(UNIT_PATH))
    steps.append(Run(("systemctl", "daemon-reload")))
    steps.append(Run(("systemctl", "reset-failed", UNIT_NAME), check=False))
    if facts.cli_link == "ours":
        steps.append(Remove(CLI_LINK))
    steps.append(Remove(options.prefix / "venv", "tree"))
    steps.append(Remove(options.prefix / "src", "tree"))
    steps.append(Remove(options.prefix, "empty-dir"))
    if options.purge:
        steps.append(Remove(CONFIG_DIR, "tree"))
        steps.append(Remove(STATE_DIR, "tree"))
        steps.append(Remove(CACHE_DIR, "tree"))
        steps.append(Remove(DROP_IN_DIR, "tree"))  # would apply again to a later install
        if facts.user_exists:
            steps.append(Run(("userdel", options.user), check=False))
    else:
        steps.append(
            Note(f"kept {CONFIG_DIR}, {STATE_DIR} and user {options.user!r} (--purge removes them)")
        )
    return steps


# --- execution -----------------------------------------------------------------------------

Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]


def execute(
    steps: Sequence[Step], *, dry_run: bool, out: TextIO, runner: Runner = subprocess.run
) -> None:
    """Print each step; perform it unless ``dry_run``. Stops at the first failing step."""
    for step in steps:
        print(("[dry-run] " if dry_run else "") + step.describe(), file=out, flush=True)
        if not dry_run:
            _apply(step, out, runner)


def _apply(step: Step, out: TextIO, runner: Runner) -> None:
    if isinstance(step, Run):
        result = runner(list(step.argv), check=False)
        if result.returncode != 0:
            if step.check:
                raise ServiceError(f"command failed ({result.returncode}): {shlex.join(step.argv)}")
            print(f"        (exit status {result.returncode}, ignored)", file=out)
    elif isinstance(step, MakeDir):
        step.path.mkdir(parents=True, exist_ok=True)
        step.path.chmod(step.mode)
        _chown(step.path, step.owner, step.group)
    elif isinstance(step, CopyFile):
        if not step.src.is_file():
            raise ServiceError(f"missing file to install: {step.src}")
        shutil.copyfile(step.src, step.dst)
        step.dst.chmod(step.mode)
        _chown(step.dst, step.owner, step.group)
    elif isinstance(step, CopyTree):
        shutil.copytree(step.src, step.dst, ignore=shutil.ignore_patterns(*_STAGE_IGNORE))
    elif isinstance(step, WriteFile):
        step.path.write_text(step.content)
        step.path.chmod(step.mode)
    elif isinstance(step, Remove):
        _remove(step, out)


def _chown(path: Path, owner: str | None, group: str | None) -> None:
    if owner or group:
        shutil.chown(path, user=owner, group=group or owner)


def _remove(step: Remove, out: TextIO) -> None:
    path = step.path
    if not path.exists() and not path.is_symlink():
        return
    if step.kind == "file" or path.is_symlink() or not path.is_dir():
        path.unlink()
    elif step.kind == "tree":
        shutil.rmtree(path)
    elif any(path.iterdir()):
        print(f"        (kept {path}: not empty)", file=out)
    else:
        path.rmdir()


# --- command line --------------------------------------------------------------------------


def _install_options(args: argparse.Namespace) -> tuple[InstallOptions, str]:
    root = source_root()
    unit = args.unit or (root / "systemd" / UNIT_NAME if root else None)
    if unit is None:
        raise ServiceError("cannot find systemd/edged.service: run from a checkout or pass --unit")
    try:
        template = Path(unit).read_text()
    except OSError as exc:
        raise ServiceError(f"cannot read the unit template {unit}: {exc.strerror}") from None
    config = args.config or (root / "configs" / "pi5-cpu.yaml" if root else None)
    package = args.package or (str(root) if root else None)
    options = InstallOptions(
        prefix=Path(args.prefix),
        user=args.user,
        unit_template=Path(unit),
        config_source=Path(config) if config else None,
        package=package,
        python=args.python,
        system_site_packages=args.system_site_packages,
        start=args.start,
    )
    return options, template


def _preflight(dry_run: bool, facts: HostFacts, command: str, err: TextIO) -> bool:
    problems = []
    if os.geteuid() != 0:
        problems.append(f"`edged service {command}` must run as root (try: sudo ... {command})")
    if not facts.systemd_running:
        problems.append("systemd is not running on this machine (/run/systemd/system is missing)")
    for problem in problems:
        print(("warning (dry run): " if dry_run else "error: ") + problem, file=err)
    return dry_run or not problems


def cmd_install(args: argparse.Namespace) -> int:
    """``edged service install``."""
    try:
        options, template = _install_options(args)
        numpy_of = options.python if options.system_site_packages else None
        facts = probe_host(options.user, options.prefix, numpy_of)
        if not _preflight(args.dry_run, facts, "install", sys.stderr):
            return 1
        steps = plan_install(options, facts, template)
        if (
            options.config_source
            and not options.config_source.is_file()
            and not facts.config_exists
        ):
            msg = f"config to install does not exist: {options.config_source} (pass --config)"
            if not args.dry_run:
                raise ServiceError(msg)
            print(f"warning (dry run): {msg}", file=sys.stderr)
        execute(steps, dry_run=args.dry_run, out=sys.stdout)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    """``edged service uninstall``."""
    try:
        options = UninstallOptions(prefix=Path(args.prefix), user=args.user, purge=args.purge)
        facts = probe_host(options.user, options.prefix)
        if not _preflight(args.dry_run, facts, "uninstall", sys.stderr):
            return 1
        execute(plan_uninstall(options, facts), dry_run=args.dry_run, out=sys.stdout)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="print every action without doing anything"
    )
    parser.add_argument(
        "--prefix", default=str(DEFAULT_PREFIX), help="install root (venv in PREFIX/venv)"
    )
    parser.add_argument("--user", default=DEFAULT_USER, help="system user the service runs as")


def add_service_subcommands(parser: argparse.ArgumentParser) -> None:
    """Add ``install`` and ``uninstall`` below ``parser`` (``edged service`` or standalone)."""
    sub = parser.add_subparsers(dest="service_command", metavar="{install,uninstall}")
    sub.required = True

    install = sub.add_parser(
        "install",
        help="create the user and venv, install the unit and config, enable and start",
        description=(
            "Install edged as a systemd service: system user, virtualenv under PREFIX, "
            f"unit in {UNIT_PATH}, config in {CONFIG_PATH} (an existing one is kept), "
            "then enable and (re)start. Safe to run again to upgrade."
        ),
    )
    _common_arguments(install)
    install.add_argument(
        "--config",
        type=Path,
        help="config to install if none exists (default: configs/pi5-cpu.yaml of the checkout)",
    )
    install.add_argument(
        "--from",
        dest="package",
        metavar="PATH|WHEEL|SPEC",
        help="what to pip install (default: this source checkout)",
    )
    install.add_argument("--unit", type=Path, help="unit template (default: systemd/edged.service)")
    install.add_argument(
        "--python",
        default=DEFAULT_PYTHON,
        help="interpreter for the venv; the system one sees apt's picamera2/HailoRT",
    )
    install.add_argument(
        "--no-system-site-packages",
        dest="system_site_packages",
        action="store_false",
        help="isolate the venv from apt-installed Python packages",
    )
    install.add_argument(
        "--no-start", dest="start", action="store_false", help="enable but do not (re)start"
    )
    install.set_defaults(func=cmd_install)

    uninstall = sub.add_parser(
        "uninstall",
        help="stop, disable and remove the service (config and state kept)",
        description=(
            f"Stop and disable the service, remove the unit and PREFIX. {CONFIG_DIR}, "
            f"{STATE_DIR} and the user are kept unless --purge."
        ),
    )
    _common_arguments(uninstall)
    uninstall.add_argument(
        "--purge", action="store_true", help=f"also remove {CONFIG_DIR}, {STATE_DIR} and the user"
    )
    uninstall.set_defaults(func=cmd_uninstall)


def register_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``edged service install|uninstall`` to the CLI's subcommands."""
    service = subparsers.add_parser(
        "service",
        help="install or remove the systemd service",
        description="Install or remove edged as a systemd service (run as root).",
    )
    add_service_subcommands(service)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edged.service_install install|uninstall ...`` (used by systemd/install.sh)."""
    parser = argparse.ArgumentParser(prog="edged service")
    add_service_subcommands(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
