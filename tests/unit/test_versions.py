"""One version reader for doctor and the backends: doctor fails a HailoRT exactly when the
Hailo backend would refuse it."""

from __future__ import annotations

import types
from importlib.metadata import version

import pytest

from edged.versions import installed_version, parse_version


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("4.18.0", (4, 18, 0)), ("4.20", (4, 20, 0)), ("4.21.0-1", (4, 21, 0)),
     ("4.18.0rc1", (4, 18, 0)), ("dev", None), ("unknown", None), ("", None)],
)  # fmt: skip
def test_parse_version(text: str, parsed: tuple[int, ...] | None) -> None:
    assert parse_version(text) == parsed


def test_installed_version_prefers_the_module_then_the_distribution() -> None:
    assert installed_version(types.SimpleNamespace(__version__="9.9"), "numpy") == "9.9"
    assert installed_version(types.ModuleType("bare"), "numpy") == version("numpy")
    assert installed_version(None, "numpy") == version("numpy")
    assert installed_version(None, "no-such-distribution-edged") is None
