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


def file_errors(path: Path, text: str) -> list[tuple[str, str]]:
    """The (where, reason) pairs load_config gives for a file holding ``text``."""
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.errors


def test_defaults_are_valid():
    config = parse_config({})
    assert config.source.uri == "synthetic:"
    assert config.publish.endpoint.startswith("tcp://127.0.0.1")
    assert config.http.host == "127.0.0.1"


SHIPPED = sorted(p.name for p in (REPO_ROOT / "configs").glob("*.yaml"))  # prometheus.yml aside


def test_the_known_configs_are_shipped():
    assert {"default.yaml", "pi5-cpu.yaml", "pi5-hailo.yaml", "pi5-hailo-4cam.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_are_valid(name):
    assert isinstance(load_config(REPO_ROOT / "configs" / name), EdgedConfig)


def test_unknown_field_is_named():
    errors = errors_of({"source": {"uri": "x.mp4", "lop": True}})
    assert "source.lop" in errors
    assert errors["source.lop"].startswith("unknown field (did you mean 'loop'? known here: ")


def test_unknown_fields_list_what_their_section_has():
    errors = errors_of({"bogus": 1, "inference": {"onnxruntime": {"thread": 2}}})
    assert errors["bogus"] == (
        "unknown field (known here: camera_id, cameras, control, detector, http, inference, "
        "model, monitor, mqtt, pipeline, postprocess, preview, publish, runtime, source, tracking)"
    )
    assert "intra_op_threads" in errors["inference.onnxruntime.thread"]


def test_a_duplicate_key_is_an_error_not_a_silently_dropped_section(tmp_path: Path):
    """PyYAML keeps the last of two equal keys: the first section's settings would vanish."""
    path = tmp_path / "dup.yaml"
    sections = file_errors(path, "postprocess:\n  conf_threshold: 0.5\nsource:\n  uri: x.mp4\n"
                                 "postprocess:\n  iou_threshold: 0.3\n")  # fmt: skip
    assert sections == [
        ("line 5, column 1", "invalid YAML: duplicate key 'postprocess' (first at line 1)")
    ]
    fields = file_errors(path, "source:\n  uri: x.mp4\n  fps: 5\n  fps: 10\n")
    assert "duplicate key 'fps' (first at line 3)" in fields[0][1]


def test_yaml_merge_keys_still_work(tmp_path: Path):
    """Anchors and ``<<`` merges (shared settings) load, and an explicit key overrides a merged
    one as YAML intends; only a key written twice in the same mapping is an error."""
    path = tmp_path / "merge.yaml"
    path.write_text("x-common: &common {conf_threshold: 0.3, iou_threshold: 0.4}\n"
                    "postprocess:\n  <<: *common\n  iou_threshold: 0.5\n")  # fmt: skip
    with pytest.raises(ConfigError) as info:  # x-common itself is no section of edged's
        load_config(path)
    assert [where for where, _ in info.value.errors] == ["x-common"]
    path.write_text("postprocess:\n  <<: {conf_threshold: 0.3, iou_threshold: 0.4}\n"
                    "  iou_threshold: 0.5\n")  # fmt: skip
    postprocess = load_config(path).postprocess
    assert (postprocess.conf_threshold, postprocess.iou_threshold) == (0.3, 0.5)


def test_a_camera_index_may_be_a_yaml_number(tmp_path: Path):
    path = tmp_path / "usb.yaml"
    path.write_text("source:\n  uri: 0\n")
    assert load_config(path).source.uri == "0"
    assert "source.uri" in errors_of({"source": {"uri": True}})


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
    errors = file_errors(tmp_path / "bad.yaml", "source:\n  uri: [unclosed\n")
    assert "line" in errors[0][0]


def test_an_unclosed_quote_says_where_it_was_opened(tmp_path: Path):
    errors = file_errors(tmp_path / "quote.yaml", 'source:\n  uri: "abc\n  fps: 3\n')
    assert "while scanning a quoted scalar from line 2" in errors[0][1]


def test_top_level_must_be_mapping():
    assert "(root)" in errors_of(["a", "b"])


def test_config_check_cli(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("postprocess:\n  iou_threshold: -1\nsource:\n  colour: red\n")
    result = subprocess.run([sys.executable, "-m", "edged.cli", "config", "check", str(bad)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2  # as `edged run` exits on the same file
    assert "postprocess.iou_threshold" in result.stderr
    assert "source.colour" in result.stderr
    assert "Traceback" not in result.stderr
    good = REPO_ROOT / "configs" / "default.yaml"
    result = subprocess.run([sys.executable, "-m", "edged.cli", "config", "check", "--no-model",
                             str(good)], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_config_check_looks_for_the_model_as_run_does(tmp_path: Path) -> None:
    """A manifest or variant file that is missing is what makes a first start fail: check says
    so with run's own message and exit status, and finds a complete model directory fine."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.yaml").write_text(
        "name: m\nvariants:\n  fp32: {backend: onnxruntime, path: m.onnx}\n"
        "  static: {backend: onnxruntime, path: m-int8.onnx}\n"
    )
    (models / "m.onnx").write_bytes(b"only looked for, not loaded")
    config = tmp_path / "c.yaml"

    def check(variant: str, manifest: str = "m") -> subprocess.CompletedProcess:
        config.write_text(f"model:\n  manifest: {manifest}\n  variant: {variant}\n"
                          f"  models_dir: {models}\n")  # fmt: skip
        return subprocess.run([sys.executable, "-m", "edged.cli", "config", "check", str(config)],
                              capture_output=True, text=True)  # fmt: skip

    ok = check("fp32")
    assert ok.returncode == 0 and f"m/fp32 → {models / 'm.onnx'}" in ok.stdout, ok
    missing_file = check("static")
    assert missing_file.returncode == 2
    assert "variant 'static' file" in missing_file.stderr
    assert "does not exist" in missing_file.stderr
    no_variant = check("int4")
    assert no_variant.returncode == 2 and "has: fp32, static" in no_variant.stderr
    no_manifest = check("fp32", manifest="other")
    assert no_manifest.returncode == 2 and "'other' not found" in no_manifest.stderr
    assert "Traceback" not in no_manifest.stderr


def test_lossless_needs_a_file(tmp_path: Path):
    from edged.pipeline.supervisor import pipeline_mode

    with pytest.raises(ConfigError) as info:
        pipeline_mode(parse_config({"source": {"uri": "rtsp://cam/x", "mode": "lossless"}}))
    assert "source.mode" in dict(info.value.errors)
    assert pipeline_mode(parse_config({"source": {"uri": "a.mp4"}})) == (False, "realtime")
    assert pipeline_mode(parse_config({"source": {"uri": "0"}})) == (False, "live")
