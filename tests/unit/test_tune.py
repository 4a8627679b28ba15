"""edged tune's pure parts: the choice, the results cache, the config edit (box agreement:
test_monitor_agreement)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edged.tools.errors import ToolError
from edged.tools.tune.apply import set_model_variant
from edged.tools.tune.cache import ResultCache, cache_key
from edged.tools.tune.choice import VariantScore, choose

# Constructed results: static is fastest but loses 1.5 points, dynamic is slower than FP32.
SCORES = [
    VariantScore("fp32", fps=10.0, accuracy=37.0),
    VariantScore("static", fps=18.0, accuracy=35.5),
    VariantScore("openvino-int8", fps=15.0, accuracy=36.6),
    VariantScore("dynamic", fps=4.0, accuracy=36.9),
]


def test_the_choice_follows_the_budget():
    assert choose(SCORES, budget=2.0).variant == "static"
    assert choose(SCORES, budget=1.0).variant == "openvino-int8"
    assert choose(SCORES, budget=0.3).variant == "fp32"  # dynamic is within it but slower


def test_a_loss_equal_to_the_budget_is_within_it():
    # 37.0 - 35.5 is 1.5 (in floats 1.5000000000000036): still within a 1.5-point budget.
    assert choose(SCORES, budget=1.5).variant == "static"


def test_all_over_budget_keeps_the_reference_and_says_why():
    choice = choose(SCORES, budget=0.0)
    assert choice.variant == "fp32"
    assert "more than 0 points" in choice.reason
    assert choice.losses == {"fp32": 0.0, "static": 1.5, "openvino-int8": 0.4, "dynamic": 0.1}


def test_a_variant_without_accuracy_is_never_picked():
    scores = [VariantScore("fp32", 10.0, 37.0), VariantScore("ncnn-fp16", 30.0, None)]
    choice = choose(scores, budget=100.0)
    assert choice.variant == "fp32"
    assert choice.losses["ncnn-fp16"] is None


def test_an_unmeasured_variant_is_never_picked():
    scores = [VariantScore("fp32", 10.0, 37.0), VariantScore("static", None, 36.9)]
    assert choose(scores, budget=5.0).variant == "fp32"


def test_ties_go_to_the_smaller_loss_then_the_reference_then_the_name():
    scores = [
        VariantScore("fp32", 10.0, 37.0),
        VariantScore("b", 12.0, 36.5),
        VariantScore("a", 12.0, 36.5),
        VariantScore("c", 12.0, 36.8),
    ]
    assert choose(scores, budget=1.0).variant == "c"  # equal FPS: smaller loss
    same = [VariantScore("fp32", 10.0, 37.0), VariantScore("b", 10.0, 37.0)]
    assert choose(same, budget=1.0).variant == "fp32"  # equal FPS and loss: the reference
    names = [VariantScore("fp32", 10.0, 37.0), *scores[1:3]]
    assert choose(names, budget=1.0).variant == "a"  # then by name: deterministic


def test_without_a_measured_reference_nothing_is_picked():
    scores = [VariantScore("fp32", None, None), VariantScore("static", 18.0, 35.0)]
    choice = choose(scores, budget=5.0)
    assert choice.variant is None
    assert "'fp32' was not measured" in choice.reason
    with pytest.raises(ValueError, match="budget"):
        choose(SCORES, budget=-1)


def test_cache_keys_follow_file_contents_and_settings(tmp_path: Path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"model one")
    b.write_bytes(b"model one")
    key = cache_key("speed", [a], {"threads": 2})
    assert cache_key("speed", [b], {"threads": 2}) == key  # the name does not matter
    assert cache_key("speed", [a], {"threads": 3}) != key
    assert cache_key("map", [a], {"threads": 2}) != key
    b.write_bytes(b"model two")
    assert cache_key("speed", [b], {"threads": 2}) != key


def test_cache_hit_miss_fresh_and_corrupt(tmp_path: Path):
    cache = ResultCache(tmp_path / "tune")
    assert cache.get("k") is None  # miss
    cache.put("k", {"fps": 12.5})
    assert cache.get("k") == {"fps": 12.5}  # hit
    assert ResultCache(tmp_path / "tune", reuse=False).get("k") is None  # --fresh
    (tmp_path / "tune" / "k.json").write_text("{half")
    assert cache.get("k") is None  # a corrupt entry is a miss, not a crash
    assert not list((tmp_path / "tune").glob("*.tmp"))


CONFIG = """\
# edged config (comments stay)
source:
  uri: street.mp4   # the camera
model:
  manifest: yolov5n
  variant: fp32     # chosen by hand
  models_dir: models
inference:
  onnxruntime:
    intra_op_threads: 2
    variant: not-this-one
"""


def test_apply_edits_only_model_variant():
    edited = set_model_variant(CONFIG, "static")
    before, after = CONFIG.splitlines(), edited.splitlines()
    changed = [(x, y) for x, y in zip(before, after, strict=True) if x != y]
    assert changed == [
        ("  variant: fp32     # chosen by hand", "  variant: static     # chosen by hand")
    ]
    assert yaml.safe_load(edited)["inference"]["onnxruntime"]["variant"] == "not-this-one"


def test_apply_adds_the_key_when_absent_and_refuses_what_it_cannot_edit():
    text = "model:\n    manifest: yolov5n\nhttp:\n  port: 1\n"
    edited = set_model_variant(text, "dynamic")
    assert edited == "model:\n    variant: dynamic\n    manifest: yolov5n\nhttp:\n  port: 1\n"
    with pytest.raises(ToolError, match="inline"):
        set_model_variant("model: {manifest: yolov5n}\n", "static")
    with pytest.raises(ToolError, match="no model section"):
        set_model_variant("source:\n  uri: x\n", "static")
    with pytest.raises(ToolError, match="plain YAML scalar"):
        set_model_variant(CONFIG, "a: b")


def test_the_benchmarked_daemon_runs_the_manifests_own_variant(tmp_path: Path):
    """Its manifest options (fp16 arithmetic, execution mode) apply as in production."""
    from edged.tools.pipeline_bench.daemon import model_section

    model = {"manifest": "/m/yolov5n.yaml", "variant": "ncnn-fp16", "models_dir": "/m",
             "backend": "ncnn", "path": "/m/yolov5n-ncnn.param"}  # fmt: skip
    assert model_section(model, tmp_path) == {
        "manifest": "/m/yolov5n.yaml", "variant": "ncnn-fp16", "models_dir": "/m"
    }  # fmt: skip
    assert not list(tmp_path.iterdir())  # no one-variant manifest written
