"""The Grafana dashboard generator, for the tests that check its output (unit and integration)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.paths import REPO_ROOT

GRAFANA = REPO_ROOT / "configs" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "edged.json"


def load_generator() -> ModuleType:
    """configs/grafana/generate_dashboard.py (a script, not a package module)."""
    path = GRAFANA / "generate_dashboard.py"
    spec = importlib.util.spec_from_file_location("edged_generate_dashboard", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
