"""Offline model tooling: export, quantize (static/dynamic), eval, bench, report.

Not imported by the daemon. :func:`register_commands` adds the subcommands to ``edged``'s CLI;
every tool also has a Python API (``edged.tools.quantize.quantize_static`` and friends).
"""

from __future__ import annotations

from edged.tools.commands import register_commands
from edged.tools.errors import ToolError

__all__ = ["ToolError", "register_commands"]
