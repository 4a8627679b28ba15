"""The rewrite cache: a model is rewritten once per content, failures are never remembered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edged.backends.onnxruntime as backend_module
from edged.backends.onnxruntime import OnnxRuntimeBackend, loadable_model
from edged.backends.rewrite_cache import RewriteCache, default_cache_dir
from edged.config import OnnxRuntimeOptions
from tests.tools.models import tiny_yolov8


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "edged" / "ort-rewrites"


@pytest.fixture
def rewrites(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every model the real rewrite process was started for."""
    calls: list[Path] = []
    real = backend_module._rewrite_apart

    def counting(path: Path, copy: Path) -> str:
        calls.append(path)
        return real(path, copy)

    monkeypatch.setattr(backend_module, "_rewrite_apart", counting)
    return calls


def _outputs(backend: OnnxRuntimeBackend) -> np.ndarray:
    spec = backend.input
    nchw = (1, 3, spec.height, spec.width)
    shape = nchw if spec.layout == "NCHW" else (1, spec.height, spec.width, 3)
    x = np.random.default_rng(0).integers(0, 256, shape).astype(spec.dtype)
    return backend.infer(x if spec.dtype == "uint8" else x / np.float32(255))[0]


def test_the_second_load_of_a_model_uses_the_cache(tmp_path, cache_home, rewrites) -> None:
    path = tiny_yolov8(tmp_path / "tiny.onnx")
    first = OnnxRuntimeBackend(path, OnnxRuntimeOptions(intra_op_threads=1))
    second = OnnxRuntimeBackend(path, OnnxRuntimeOptions(intra_op_threads=1))
    assert rewrites == [path]  # one rewrite process, not two
    assert len(list(cache_home.glob("*.onnx"))) == 1
    assert (second.input.layout, second.input.dtype) == (first.input.layout, first.input.dtype)
    np.testing.assert_array_equal(_outputs(second), _outputs(first))


def test_a_changed_model_is_rewritten_again(tmp_path, cache_home, rewrites) -> None:
    path = tiny_yolov8(tmp_path / "tiny.onnx")
    OnnxRuntimeBackend(path, OnnxRuntimeOptions(intra_op_threads=1))
    tiny_yolov8(path, seed=1)  # new content, same name
    OnnxRuntimeBackend(path, OnnxRuntimeOptions(intra_op_threads=1))
    assert rewrites == [path, path]


def test_a_failed_rewrite_is_not_remembered(tmp_path, cache_home, monkeypatch) -> None:
    path = tiny_yolov8(tmp_path / "tiny.onnx")
    monkeypatch.setattr(backend_module, "_rewrite_apart",
                        lambda source, copy: backend_module.REWRITE_FAILED)  # fmt: skip
    backend = OnnxRuntimeBackend(path, OnnxRuntimeOptions(intra_op_threads=1))
    assert backend.input.layout == "NCHW"  # the original model, as it is
    assert not cache_home.exists() or list(cache_home.iterdir()) == []


def test_nothing_to_rewrite_is_remembered_too(tmp_path) -> None:
    cache = RewriteCache(tmp_path / "c")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model bytes")
    key = cache.key(model)
    assert cache.get(key) is None
    cache.put(key, None)
    hit = cache.get(key)
    assert hit is not None and hit.model is None


def test_only_the_most_recently_used_entries_stay(tmp_path) -> None:
    cache = RewriteCache(tmp_path / "c", keep=10)
    rewritten = tmp_path / "r.onnx"
    rewritten.write_bytes(b"rewritten")
    for i in range(5):
        cache.put(f"k{i}", rewritten)
        os.utime(cache.folder / f"k{i}.onnx", (1000 + i, 1000 + i))  # k4 the newest
    cache.keep = 3
    cache.get("k0")  # used again: now the newest
    cache.put("k5", rewritten)
    assert sorted(p.stem for p in cache.folder.glob("*.onnx")) == ["k0", "k4", "k5"]


def test_an_unwritable_cache_only_costs_the_caching(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = RewriteCache(blocker / "sub")
    cache.put("k", None)  # no exception
    assert cache.get("k") is None


def test_systemd_cache_directory_wins(monkeypatch) -> None:
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/edged")
    assert default_cache_dir() == Path("/var/cache/edged/ort-rewrites")
    monkeypatch.delenv("CACHE_DIRECTORY")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert default_cache_dir() == Path("/x/edged/ort-rewrites")


def _nothing_to_rewrite(path: Path) -> Path:
    """A uint8 NHWC image input, no Softmax, no Split: no rewrite applies."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 8, 8, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_model_with_nothing_to_rewrite_is_remembered_as_such(tmp_path, rewrites) -> None:
    path = _nothing_to_rewrite(tmp_path / "plain.onnx")
    cache = RewriteCache(tmp_path / "c")
    for _ in range(2):
        with loadable_model(path, rewrite=True, cache=cache) as source:
            assert source == str(path)  # the model itself
    assert rewrites == [path]  # the helper ran once; the second load knew
    assert [p.suffix for p in cache.folder.iterdir()] == [".none"]


def test_the_inference_process_never_imports_onnx(tmp_path) -> None:
    """The rewrites run apart so that onnx (and its heap) stay out of the inference stage."""
    path = tiny_yolov8(tmp_path / "tiny.onnx")
    code = (
        "import sys; from pathlib import Path; from edged.backends.onnxruntime import "
        "OnnxRuntimeBackend; from edged.config import OnnxRuntimeOptions; "
        f"OnnxRuntimeBackend(Path({str(path)!r}), OnnxRuntimeOptions(intra_op_threads=1)); "
        "print('onnx' in sys.modules)"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for _ in range(2):  # a rewrite, then a cache hit
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, check=True)  # fmt: skip
        assert done.stdout.strip() == "False"
