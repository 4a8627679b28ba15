"""The backend registry: configs and manifests validate against each runtime's own options."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from edged.backends.base import BackendError, load_backend
from edged.backends.ncnn import blob_names
from edged.backends.registry import backend_for_suffix, plugins
from edged.config import ConfigError, backend_options, parse_config
from edged.models import ModelError, load_manifest, resolve_single_file, resolve_variant
from edged.tools.backend_choice import backend_name, options_for, split_backend
from edged.tools.errors import ToolError


def _manifest(tmp_path: Path, variant: dict) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "m", "variants": {"v": variant}}))
    return path


def test_every_builtin_runtime_is_registered_and_imports_nothing_heavy():
    assert set(plugins()) == {"onnxruntime", "openvino", "ncnn", "hailo"}
    # Validating a config never imports a runtime (the supervisor stays small).
    code = ("import sys; from edged.config import parse_config; "
            "parse_config({'inference': {'openvino': {'threads': 1}, 'ncnn': {}}}); "
            "print(sorted({'openvino', 'ncnn', 'onnxruntime', 'hailo_platform'} & "
            "set(sys.modules)))")  # fmt: skip
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_sections_are_each_backends_own_options():
    config = parse_config({"inference": {"openvino": {"threads": 3, "execution_mode": "accuracy"},
                                         "ncnn": {"fp16_storage": True}}})  # fmt: skip
    assert config.inference.openvino.threads == 3
    assert config.inference.ncnn.fp16_storage is True
    assert config.inference.onnxruntime.graph_rewrites is True  # defaults stay
    with pytest.raises(ConfigError, match=r"inference\.openvno: unknown field \(did you mean "
                                          r"'openvino'\?"):  # fmt: skip
        parse_config({"inference": {"openvno": {}}})
    with pytest.raises(ConfigError, match=r"inference\.openvino\.thread: unknown field"):
        parse_config({"inference": {"openvino": {"thread": 1}}})
    with pytest.raises(ConfigError, match=r"inference\.openvino\.execution_mode"):
        parse_config({"inference": {"openvino": {"execution_mode": "fast"}}})


def test_manifest_backend_and_options_are_checked_against_the_registry(tmp_path):
    with pytest.raises(
        ModelError,
        match=r"variants\.v\.backend: unknown backend 'tensorrt' "
        r"\(known: hailo, ncnn, onnxruntime, openvino\)",
    ):
        load_manifest(_manifest(tmp_path, {"backend": "tensorrt", "path": "m.engine"}))
    with pytest.raises(ModelError, match=r"variants\.v: options\.fp16: unknown field"):
        load_manifest(_manifest(tmp_path, {"backend": "ncnn", "path": "m.param",
                                           "options": {"fp16": True}}))  # fmt: skip
    manifest = load_manifest(
        _manifest(
            tmp_path, {"backend": "ncnn", "path": "m.param", "options": {"fp16_storage": True}}
        )
    )
    assert manifest.variants["v"].options == {"fp16_storage": True}


def test_variant_options_go_over_the_config_section(tmp_path):
    (tmp_path / "m.param").write_text("7767517\n")
    (tmp_path / "m.bin").write_bytes(b"")
    path = _manifest(tmp_path, {"backend": "ncnn", "path": "m.param",
                                "options": {"fp16_storage": True}})  # fmt: skip
    resolved = resolve_variant(path, "v", tmp_path)
    inference = parse_config({"inference": {"ncnn": {"threads": 1}}}).inference
    options = backend_options(inference, resolved.backend, dict(resolved.options))
    assert (options.threads, options.fp16_storage) == (1, True)


def test_a_missing_weights_file_beside_the_graph_is_named(tmp_path):
    (tmp_path / "m.xml").write_text("<net/>")
    path = _manifest(tmp_path, {"backend": "openvino", "path": "m.xml"})
    with pytest.raises(ModelError, match=r"m\.xml needs m\.bin beside it"):
        resolve_variant(path, "v", tmp_path)


def test_suffixes_pick_the_backend(tmp_path):
    assert backend_for_suffix(Path("a.onnx")) == "onnxruntime"
    assert backend_for_suffix(Path("a.XML")) == "openvino"
    assert backend_for_suffix(Path("a.param")) == "ncnn"
    assert backend_for_suffix(Path("a.hef")) == "hailo"
    (tmp_path / "a.tflite").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"unknown model type \(expected .hef, .onnx, .param, "
                                         r"\.xml\)"):  # fmt: skip
        resolve_single_file(tmp_path / "a.tflite", None)
    assert split_backend("openvino:m.onnx") == ("openvino", Path("m.onnx"))
    assert split_backend("C:/m.onnx") == (None, Path("C:/m.onnx"))
    assert backend_name("openvino:m.onnx") == "openvino"
    assert backend_name("m.onnx", "ncnn") == "ncnn"
    with pytest.raises(ToolError, match="unknown backend 'trt'"):
        backend_name("m.onnx", "trt")


def test_tool_options_carry_the_thread_budget_to_each_backend():
    assert options_for("onnxruntime", 2, spin_wait=False).intra_op_threads == 2
    assert options_for("openvino", 2, spin_wait=False).threads == 2  # spin_wait: not OV's
    with pytest.raises(ToolError, match=r"openvino options: execution_mode"):
        options_for("openvino", execution_mode="fast")


def test_unknown_backend_at_load_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        load_backend("nope", tmp_path / "m.onnx", None)


def test_ncnn_blob_names_are_read_from_the_graph():
    param = ("7767517\n4 4\nInput in0 0 1 in0\nConvolution c 1 1 in0 a 0=16\n"
             "Split s 1 2 a b c2\nSigmoid t 1 1 b out0\n")  # fmt: skip
    assert blob_names(param) == (["in0"], ["c2", "out0"])
    with pytest.raises(ValueError, match="magic"):
        blob_names("7767518\n")
