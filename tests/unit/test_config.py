"""Config validation: every error names its field and reason; the CLI check exits non-zero."""

import subprocess
import sys
from pathlib import Path

import pytest

from edged.config import ConfigError, EdgedConfig, apply_overrides, load_config, parse_config
from tests.paths import REPO_ROOT


def errors_of(data):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return dict(info.value.errors)


def test_defaults_are_valid():
    config = parse_config({})
    assert config.source.uri == "synthetic:"
    assert config.publish.endpoint.startswith("tcp://127.0.0.1")
    assert config.http.host == "127.0.0.1"


@pytest.mark.parametrize("name", ["default.yaml", "pi5-cpu.yaml", "pi5-hailo.yaml"])
def test_shipped_configs_are_valid(name):
    path = REPO_ROOT / "configs" / name
    if not path.exists():
        pytest.skip(f"{name} not shipped yet")
    assert isinstance(load_config(path), EdgedConfig)


def test_unknown_field_is_named():
    errors = errors_of({"source": {"uri": "x.mp4", "lop": True}})
    assert "source.lop" in errors
    assert "unknown field" in errors["source.lop"]


def test_an_unknown_uri_scheme_is_a_typo_not_a_file():
    errors = errors_of({"source": {"uri": "rstp://cam.local/stream"}})
    assert "unknown scheme 'rstp://'" in errors["source.uri"]
    assert parse_config({"source": {"uri": "rtsp://cam.local/stream"}}).source.uri.startswith(
        "rtsp"
    )


def test_bad_values_name_field_and_reason():
    errors = errors_of({
        "postprocess": {"conf_threshold": 1.5},
        "publish": {"endpoint": "http://nope"},
        "camera_id": "bad id!",
        "source": {"mode": "sometimes"},
    })  # fmt: skip
    assert "less than or equal to 1" in errors["postprocess.conf_threshold"]
    assert "tcp://" in errors["publish.endpoint"]
    assert "camera_id" in errors
    assert "source.mode" in errors


def test_model_needs_exactly_one_source():
    assert "model" in errors_of({"model": {"manifest": None, "path": None}})
    assert "model" in errors_of({"model": {"manifest": "a", "path": "b.onnx"}})


def test_tcp_control_requires_authentication():
    errors = errors_of({"control": {"endpoint": "tcp://0.0.0.0:5556"}})
    assert "curve" in errors["control"]


def test_overrides_revalidate():
    config = apply_overrides(EdgedConfig(), {"source.uri": "video.mp4", "source.loop": True})
    assert config.source.uri == "video.mp4" and config.source.loop
    with pytest.raises(ConfigError) as info:
        apply_overrides(EdgedConfig(), {"http.port": 70000})
    assert "http.port" in dict(info.value.errors)


def test_yaml_syntax_error_gives_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("source:\n  uri: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "line" in info.value.errors[0][0]


def test_top_level_must_be_mapping():
    assert "(root)" in errors_of(["a", "b"])


def test_config_check_cli(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("postprocess:\n  iou_threshold: -1\nsource:\n  colour: red\n")
    result = subprocess.run([sys.executable, "-m", "edged.cli", "config", "check", str(bad)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1
    assert "postprocess.iou_threshold" in result.stderr
    assert "source.colour" in result.stderr
    assert "Traceback" not in result.stderr
    good = REPO_ROOT / "configs" / "default.yaml"
    result = subprocess.run([sys.executable, "-m", "edged.cli", "config", "check", str(good)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_lossless_needs_a_file(tmp_path: Path):
    from edged.pipeline.supervisor import pipeline_mode

    with pytest.raises(ConfigError) as info:
        pipeline_mode(parse_config({"source": {"uri": "rtsp://cam/x", "mode": "lossless"}}))
    assert "source.mode" in dict(info.value.errors)
    assert pipeline_mode(parse_config({"source": {"uri": "a.mp4"}})) == (False, "realtime")
    assert pipeline_mode(parse_config({"source": {"uri": "0"}})) == (False, "live")
