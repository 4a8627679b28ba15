"""pytest fixtures that put the test doubles in this directory on ``sys.path`` for one test.

Import them into a test module (``from tests.fakes.fixtures import fake_hailo``); each test gets a
freshly imported double (its state and configuration reset) and the real modules, if any, come
back afterwards. Spawned processes use ``PYTHONPATH=<this dir>`` (see :func:`fake_env`) instead.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FAKES_DIR = Path(__file__).resolve().parent


def _drop(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


def _fresh_import(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[ModuleType, Any]:
    """Import ``name`` from this directory; returns it and a callable that undoes the import."""
    monkeypatch.syspath_prepend(str(FAKES_DIR))
    saved = {m: mod for m, mod in sys.modules.items() if m == name or m.startswith(name + ".")}
    _drop(name)
    module = importlib.import_module(name)
    assert Path(module.__file__ or "").resolve().is_relative_to(FAKES_DIR), module.__file__

    def restore() -> None:
        _drop(name)
        sys.modules.update(saved)

    return module, restore


def fake_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that must import the doubles instead of real packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(FAKES_DIR), str(FAKES_DIR.parents[1]), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env.update(extra)
    return env


def write_hef(path: Path, **description: Any) -> Path:
    """A dummy HEF for the ``hailo_platform`` double; ``description`` overrides its defaults."""
    path.write_text(json.dumps(description) if description else "fake hef\n")
    return path


@pytest.fixture
def fake_hailo(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The ``hailo_platform`` double, with a ``/dev/hailo0`` that "exists" for error mapping."""
    for key in [k for k in os.environ if k.startswith("EDGED_FAKE_HAILO_")]:
        monkeypatch.delenv(key)
    module, restore = _fresh_import(monkeypatch, "hailo_platform")
    import edged.backends.hailo as hailo_backend
    import edged.backends.hailo_errors as hailo_errors

    monkeypatch.setattr(hailo_errors, "hailo_device_nodes", lambda: ["/dev/hailo0"])
    shared = hailo_backend.SharedVDevice()
    monkeypatch.setattr(hailo_backend, "SHARED_VDEVICE", shared)
    try:
        yield module
    finally:
        leaked = shared.refs
        while shared.refs:
            shared.release()
        restore()
        assert leaked == 0, f"a test left {leaked} Hailo backend(s) open"


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The ``picamera2`` double (and its ``libcamera`` companion)."""
    for key in [k for k in os.environ if k.startswith("EDGED_FAKE_PICAMERA2_")]:
        monkeypatch.delenv(key)
    _, restore_libcamera = _fresh_import(monkeypatch, "libcamera")
    module, restore = _fresh_import(monkeypatch, "picamera2")
    try:
        yield module
    finally:
        restore()
        restore_libcamera()
