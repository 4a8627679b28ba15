"""Property-based tests of the config loader: any input gives a config or a clear ConfigError.

"Clear" means: ``ConfigError`` and nothing else (never a traceback from deeper down), at least
one error, and every error naming a field path that points at what was wrong. Three generators:
arbitrary nested values, valid configs with one leaf replaced by anything or one unknown key
added (the error must blame exactly that place), and arbitrary YAML text through the file loader.

``pytest -s`` prints how many inputs each property was tried with.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edged.config import ConfigError, EdgedConfig, load_config, parse_config

TRIED: dict[str, int] = {}
# The same examples every run (no test that passes or fails by luck); EDGED_FUZZ_EXPLORE=1
# draws new ones each run, to go looking.
DERANDOMIZE = os.environ.get("EDGED_FUZZ_EXPLORE") != "1"
SETTINGS = settings(max_examples=1000, deadline=None, database=None, derandomize=DERANDOMIZE,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

SECTIONS = set(EdgedConfig.model_fields)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=10)
    | st.sampled_from(
        [
            "tcp://127.0.0.1:1",
            "ipc:///tmp/x",
            "live",
            "lossless",
            "json",
            "INFO",
            "synthetic:",
            "x.onnx",
            "",
            "0",
            "-1",
            "1e400",
        ]
    )
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=12) | st.sampled_from(sorted(SECTIONS)), inner, max_size=4
        )
    ),
    max_leaves=20,
)
keys = st.text(max_size=12) | st.integers() | st.none() | st.booleans()


def _count(name: str) -> None:
    TRIED[name] = TRIED.get(name, 0) + 1


def check_error(exc: ConfigError) -> list[tuple[str, str]]:
    assert exc.errors, "a ConfigError without errors"
    for path, reason in exc.errors:
        assert isinstance(path, str) and path, exc.errors
        assert isinstance(reason, str) and reason.strip(), exc.errors
        assert path in str(exc) and reason in str(exc)
    return exc.errors


def leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        return [p for k, v in node.items() for p in leaf_paths(v, (*prefix, k))]
    return [prefix]


VALID = EdgedConfig().model_dump(mode="python")
LEAVES = [p for p in leaf_paths(VALID) if p]
SECTION_PATHS = [()] + [p[:i] for p in LEAVES for i in range(1, len(p)) if p[:i]]


def related(error_path: str, blamed: tuple[str, ...]) -> bool:
    """``error_path`` is the blamed field, inside it, or one of its enclosing sections."""
    parts = tuple(error_path.split("."))
    blamed = tuple(str(b) for b in blamed)
    n = min(len(parts), len(blamed))
    return parts[:n] == blamed[:n] or (error_path == "(root)" and not blamed)


@SETTINGS
@given(values)
@example({"source": {"reconnect": None}})
@example({"pipeline": {"ring_slots": float("nan")}})
@example({"model": {"manifest": None, "path": None}})
@example({1: 2, None: 3, "x": {}})
@example({True: {}})
@example([{"source": {}}])
def test_any_value_is_a_config_or_a_clear_error(data: Any) -> None:
    _count("parse_config: arbitrary nested values")
    try:
        config = parse_config(data)
    except ConfigError as exc:
        check_error(exc)
        return
    assert isinstance(config, EdgedConfig)


@SETTINGS
@given(st.sampled_from(LEAVES), values)
def test_a_bad_value_is_blamed_on_its_own_field(path: tuple[str, ...], value: Any) -> None:
    _count("parse_config: one field of a valid config replaced")
    data = copy.deepcopy(VALID)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    try:
        parse_config(data)
    except ConfigError as exc:
        for error_path, _reason in check_error(exc):
            assert related(error_path, path), (error_path, path, value)


@SETTINGS
@given(st.sampled_from(SECTION_PATHS), keys, values)
def test_an_unknown_key_is_named_with_its_path(section: tuple[str, ...], key: Any, value: Any):
    _count("parse_config: one unknown key added")
    data = copy.deepcopy(VALID)
    node = data
    for part in section:
        node = node[part]
    if key in node:
        return
    node[key] = value
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    errors = dict(check_error(info.value))
    # pydantic names a bool key by its int value (True -> 1); from YAML only true/false
    # are booleans (see test_a_yaml_boolean_key_is_named_as_written)
    shown = str(int(key)) if isinstance(key, bool) else str(key)
    expected = ".".join([*section, shown]) if section or shown else "(root)"
    assert expected in errors, (expected, errors)
    assert ("unknown field" if isinstance(key, str) else "Keys should be strings") \
        in errors[expected]  # fmt: skip


yaml_texts = st.one_of(
    st.text(max_size=200),
    values.map(lambda v: yaml.safe_dump(v, allow_unicode=True) if not _has_bytes(v) else "x: 1"),
    st.lists(
        st.sampled_from(
            [
                "source:",
                "  uri: a",
                "  mode: live",
                "model:",
                "  path: m.onnx",
                "pipeline:",
                "  ring_slots: 2",
                "- x",
                "{",
                "]",
                "&a [*a]",
                "!!python/object:os.system {}",
                "? [a]",
                "  :",
                "\t",
                "...",
                "---",
                "http: {port: 99999}",
                "camera_id: 2020-01-01",
            ]
        ),
        max_size=8,
    ).map("\n".join),
)


def _has_bytes(v: Any) -> bool:
    if isinstance(v, bytes):
        return True
    if isinstance(v, dict):
        return any(_has_bytes(k) or _has_bytes(x) for k, x in v.items())
    if isinstance(v, list):
        return any(_has_bytes(x) for x in v)
    return False


@settings(
    max_examples=500,
    deadline=None,
    database=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(yaml_texts)
def test_any_yaml_file_is_a_config_or_a_clear_error(tmp_path: Path, text: str) -> None:
    _count("load_config: arbitrary YAML text")
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_config(path)
    except ConfigError as exc:
        check_error(exc)
        assert str(path) in str(exc)
        return
    assert isinstance(config, EdgedConfig)


def test_a_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00source: {}\n\xc3\x28")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    check_error(info.value)


def test_deeply_nested_yaml_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    check_error(info.value)


@pytest.mark.parametrize("section, field", [("http", "ready_max_age_s"), ("source", "fps"),
                                            ("pipeline", "restart_window_s")])  # fmt: skip
def test_infinite_numbers_are_refused(section: str, field: str) -> None:
    with pytest.raises(ConfigError):
        parse_config({section: {field: math.inf}})


def test_a_yaml_boolean_key_is_named_as_written(tmp_path: Path) -> None:
    path = tmp_path / "on.yaml"
    path.write_text("source:\n  on: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "source.on" in dict(info.value.errors)


def test_report_inputs_tried() -> None:
    """Runs last in this module (pytest keeps file order): the figure for the issue note."""
    total = sum(TRIED.values())
    print(f"\nconfig fuzzing: {total} inputs")
    for name, n in TRIED.items():
        print(f"  {n:6d}  {name}")
    assert total > 0 or not TRIED
