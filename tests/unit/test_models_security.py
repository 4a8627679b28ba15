"""Only files inside the model directory can be loaded: ensure_inside / resolve_variant edge cases.

The daemon-level checks (a swap to a traversing or symlinked variant is refused while frames keep
flowing) are in tests/integration/test_hot_swap.py; these are the path rules underneath.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from edged.config import ModelConfig
from edged.models import ModelError, ensure_inside, resolve_from_config, resolve_variant


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """models/ with a real file, outside/ beside it, and models-evil/ (a prefix look-alike)."""
    models = tmp_path / "models"
    outside = tmp_path / "outside"
    evil = tmp_path / "models-evil"
    for d in (models, outside, evil, models / "sub"):
        d.mkdir()
    (models / "m.onnx").write_bytes(b"model")
    (models / "sub" / "deep.onnx").write_bytes(b"model")
    (outside / "secret.onnx").write_bytes(b"secret")
    (evil / "m.onnx").write_bytes(b"evil")
    return {"root": tmp_path, "models": models, "outside": outside, "evil": evil}


def write_manifest(models: Path, variants: dict[str, str], labels: str = "auto") -> Path:
    path = models / "net.yaml"
    path.write_text(yaml.safe_dump({
        "name": "net", "labels": labels,
        "variants": {k: {"backend": "onnxruntime", "path": v} for k, v in variants.items()},
    }))  # fmt: skip
    return path


# -- ensure_inside ------------------------------------------------------------------------------


def test_a_file_inside_is_returned_resolved(tree) -> None:
    models = tree["models"]
    assert ensure_inside(models / "m.onnx", models) == (models / "m.onnx").resolve()
    assert ensure_inside(models / "sub" / ".." / "m.onnx", models) == models / "m.onnx"
    assert ensure_inside(models / "sub" / "deep.onnx", models) == models / "sub" / "deep.onnx"


@pytest.mark.parametrize(
    "relative",
    [
        "../outside/secret.onnx",
        "sub/../../outside/secret.onnx",
        "../models-evil/m.onnx",  # shares the string prefix "models"
        "./../models/../outside/secret.onnx",
        "../../../../../../../../etc/passwd",
        "..",
    ],
)
def test_traversal_is_refused(tree, relative: str) -> None:
    with pytest.raises(ModelError, match="outside the model directory"):
        ensure_inside(tree["models"] / relative, tree["models"])


def test_absolute_paths_outside_are_refused(tree) -> None:
    for path in (tree["outside"] / "secret.onnx", Path("/etc/passwd"), Path("/")):
        with pytest.raises(ModelError, match="outside the model directory"):
            ensure_inside(path, tree["models"])


def test_a_symlink_escaping_the_directory_is_refused(tree) -> None:
    models = tree["models"]
    (models / "link.onnx").symlink_to(tree["outside"] / "secret.onnx")
    (models / "dirlink").symlink_to(tree["outside"], target_is_directory=True)
    (models / "chain.onnx").symlink_to(models / "link.onnx")  # inside -> inside -> outside
    for name in ("link.onnx", "dirlink/secret.onnx", "chain.onnx"):
        with pytest.raises(ModelError, match="outside the model directory"):
            ensure_inside(models / name, models)


def test_a_relative_symlink_climbing_out_is_refused(tree) -> None:
    models = tree["models"]
    (models / "sub" / "up.onnx").symlink_to(Path("../../outside/secret.onnx"))
    with pytest.raises(ModelError, match="outside the model directory"):
        ensure_inside(models / "sub" / "up.onnx", models)


def test_a_symlink_staying_inside_is_allowed(tree) -> None:
    models = tree["models"]
    (models / "alias.onnx").symlink_to(models / "sub" / "deep.onnx")
    assert ensure_inside(models / "alias.onnx", models) == models / "sub" / "deep.onnx"


def test_a_symlinked_model_directory_is_followed_consistently(tree) -> None:
    """models -> real/ : files in real/ are inside; outside/ is still outside."""
    link = tree["root"] / "models-link"
    link.symlink_to(tree["models"], target_is_directory=True)
    assert ensure_inside(link / "m.onnx", link) == tree["models"] / "m.onnx"
    with pytest.raises(ModelError):
        ensure_inside(link / ".." / "outside" / "secret.onnx", link)


def test_a_relative_root_is_resolved_against_the_working_directory(tree, monkeypatch) -> None:
    monkeypatch.chdir(tree["root"])
    assert ensure_inside(Path("models/m.onnx"), Path("models")) == tree["models"] / "m.onnx"
    with pytest.raises(ModelError):
        ensure_inside(Path("outside/secret.onnx"), Path("models"))


def test_the_error_names_the_path_and_the_directory(tree) -> None:
    with pytest.raises(ModelError) as info:
        ensure_inside(tree["models"] / "../outside/secret.onnx", tree["models"])
    message = str(info.value)
    assert str(tree["outside"] / "secret.onnx") in message
    assert str(tree["models"]) in message


@pytest.mark.parametrize("case", ["symlink-loop", "nul-byte"])
def test_unresolvable_paths_are_a_model_error(tree, case: str) -> None:  # fmt: skip
    models = tree["models"]
    if case == "symlink-loop":
        (models / "a.onnx").symlink_to(models / "b.onnx")
        (models / "b.onnx").symlink_to(models / "a.onnx")
        path = models / "a.onnx"
    else:
        path = models / "m\x00.onnx"
    with pytest.raises(ModelError):
        ensure_inside(path, models)


# -- resolve_variant / resolve_from_config ------------------------------------------------------


def test_variants_resolve_inside_and_refuse_escapes(tree) -> None:
    models = tree["models"]
    (models / "link.onnx").symlink_to(tree["outside"] / "secret.onnx")
    manifest = write_manifest(models, {
        "ok": "m.onnx", "deep": "sub/deep.onnx", "up": "../outside/secret.onnx",
        "abs": str(tree["outside"] / "secret.onnx"), "link": "link.onnx",
        "dir": "sub", "empty": "", "dot": ".",
    })  # fmt: skip
    assert resolve_variant(manifest, "ok", models).path == models / "m.onnx"
    assert resolve_variant(manifest, "deep", models).path == models / "sub" / "deep.onnx"
    for variant in ("up", "abs", "link"):
        with pytest.raises(ModelError, match="outside the model directory"):
            resolve_variant(manifest, variant, models)
    for variant in ("dir", "empty", "dot"):  # inside, but not a file
        with pytest.raises(ModelError, match="does not exist"):
            resolve_variant(manifest, variant, models)
    for name in ("../../etc/passwd", "OK", "", "ok\x00"):
        with pytest.raises(ModelError, match="no variant"):
            resolve_variant(manifest, name, models)


def test_allowed_dirs_extend_the_model_directory_and_nothing_else(tree) -> None:
    models, outside = tree["models"], tree["outside"]
    manifest = write_manifest(models, {"extra": str(outside / "secret.onnx"),
                                       "evil": str(tree["evil"] / "m.onnx")})  # fmt: skip
    assert resolve_variant(manifest, "extra", models, (outside,)).path == outside / "secret.onnx"
    with pytest.raises(ModelError) as info:
        resolve_variant(manifest, "evil", models, (outside,))
    assert str(models) in str(info.value)  # the error names the model directory


def test_a_manifest_is_found_by_name_in_the_model_directory(tree) -> None:
    models = tree["models"]
    write_manifest(models, {"fp32": "m.onnx"})
    config = ModelConfig(manifest="net", variant="fp32", models_dir=str(models))
    assert resolve_from_config(config).path == models / "m.onnx"
    with pytest.raises(ModelError, match="not found"):
        resolve_from_config(ModelConfig(manifest="nope", models_dir=str(models)))


def test_swapping_needs_a_manifest(tree) -> None:
    config = ModelConfig(path=str(tree["models"] / "m.onnx"))
    assert resolve_from_config(config).variant == "default"
    with pytest.raises(ModelError, match="needs a model manifest"):
        resolve_from_config(config, "static")


def test_a_labels_file_outside_the_model_directory_is_refused(tree) -> None:
    models = tree["models"]
    (tree["outside"] / "labels.txt").write_text("a\nb\n")
    manifest = write_manifest(models, {"ok": "m.onnx"}, labels="../outside/labels.txt")
    with pytest.raises(ModelError, match="outside the model directory"):
        resolve_variant(manifest, "ok", models)


def test_unreadable_manifests_are_model_errors(tree) -> None:
    models = tree["models"]
    bad = models / "bad.yaml"
    for text in ("name: [", "name: x\nvariants: {}\n", "- a\n", "name: 'a b'\nvariants: {x: 1}"):
        bad.write_text(text)
        with pytest.raises(ModelError):
            resolve_variant(bad, "x", models)
    bad.chmod(0)
    if os.geteuid() != 0:  # root reads anything
        with pytest.raises(ModelError, match="cannot read"):
            resolve_variant(bad, "x", models)
