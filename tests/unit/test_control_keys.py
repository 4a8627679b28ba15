"""CURVE settings of a tcp:// control endpoint: no silent "any client", no missing key files.

pyzmq reads the location ``"*"`` as CURVE_ALLOW_ANY and only logs a key directory it cannot
read (then refuses every client): both must be configuration errors that name the field.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from zmq.auth import create_certificates

from edged.config import ConfigError, ControlConfig, parse_config
from edged.control import check_curve_keys, curve_key_errors
from tests.paths import REPO_ROOT

ENDPOINT = "tcp://127.0.0.1:5599"


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    server_dir, clients = tmp_path / "server", tmp_path / "clients"
    server_dir.mkdir()
    clients.mkdir()
    public, secret = create_certificates(server_dir, "server")
    create_certificates(clients, "client")
    (clients / "client.key_secret").unlink()  # the server holds public keys only
    return {"secret": Path(secret), "public": Path(public), "clients": clients}


def control_errors(control: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"control": control})
    return dict(info.value.errors)


def test_a_wildcard_key_directory_is_refused(keys: dict[str, Path]) -> None:
    errors = control_errors(
        {
            "endpoint": ENDPOINT,
            "curve_server_secret_key_file": str(keys["secret"]),
            "curve_authorized_keys_dir": "*",
        }
    )
    reason = errors["control.curve_authorized_keys_dir"]
    assert "any client key" in reason and "allow_any_client" in reason


def test_any_client_must_be_asked_for_explicitly(keys: dict[str, Path]) -> None:
    config = parse_config(
        {
            "control": {
                "endpoint": ENDPOINT,
                "allow_any_client": True,
                "curve_server_secret_key_file": str(keys["secret"]),
            }
        }
    )
    assert config.control.allow_any_client and config.control.curve_authorized_keys_dir is None
    assert curve_key_errors(config.control) == []
    both = control_errors(
        {
            "endpoint": ENDPOINT,
            "allow_any_client": True,
            "curve_server_secret_key_file": str(keys["secret"]),
            "curve_authorized_keys_dir": str(keys["clients"]),
        }
    )
    assert "exclude each other" in both["control"]
    neither = control_errors(
        {"endpoint": ENDPOINT, "curve_server_secret_key_file": str(keys["secret"])}
    )
    assert "allow_any_client" in neither["control"]


def tcp_control(keys: dict[str, Path], **changes: str) -> ControlConfig:
    settings = {
        "endpoint": ENDPOINT,
        "curve_server_secret_key_file": str(keys["secret"]),
        "curve_authorized_keys_dir": str(keys["clients"]),
        **changes,
    }
    return ControlConfig(**settings)


def test_usable_keys_pass(keys: dict[str, Path]) -> None:
    assert curve_key_errors(tcp_control(keys)) == []
    assert curve_key_errors(ControlConfig()) == []  # ipc: no keys read


@pytest.mark.parametrize(
    ("field", "change", "reason"),
    [
        ("curve_authorized_keys_dir", "missing-dir", "no such directory"),
        ("curve_authorized_keys_dir", "empty-dir", "holds no client public keys"),
        ("curve_server_secret_key_file", "missing-file", "no such file"),
        ("curve_server_secret_key_file", "public-only", "holds no secret key"),
    ],
)
def test_unusable_key_files_name_their_field(
    keys: dict[str, Path], tmp_path: Path, field: str, change: str, reason: str
) -> None:
    (tmp_path / "empty").mkdir()
    value = {
        "missing-dir": tmp_path / "nope",
        "empty-dir": tmp_path / "empty",
        "missing-file": tmp_path / "nope.key_secret",
        "public-only": keys["public"],
    }[change]
    errors = dict(curve_key_errors(tcp_control(keys, **{field: str(value)})))
    assert list(errors) == [f"control.{field}"] and reason in errors[f"control.{field}"]
    with pytest.raises(ConfigError) as info:
        check_curve_keys(tcp_control(keys, **{field: str(value)}), "edged.yaml")
    assert f"control.{field}" in str(info.value)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edged.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("keys_dir", ["*", "missing"])
def test_run_and_config_check_exit_2_naming_the_field(
    keys: dict[str, Path], tmp_path: Path, keys_dir: str
) -> None:
    """Before: '*' ran with any client allowed; a missing directory ran refusing everyone."""
    control = {
        "endpoint": ENDPOINT,
        "curve_server_secret_key_file": str(keys["secret"]),
        "curve_authorized_keys_dir": keys_dir if keys_dir == "*" else str(tmp_path / "missing"),
    }
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump({"control": control}))
    for args in (
        ["config", "check", "--no-model", str(config)],
        ["run", "--config", str(config), "--runtime-dir", str(tmp_path / "run")],
    ):
        done = run_cli(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "control.curve_authorized_keys_dir" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
