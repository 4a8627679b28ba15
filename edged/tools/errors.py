"""The one exception the tools raise for problems the user can fix (bad path, missing extra)."""

from __future__ import annotations


class ToolError(RuntimeError):
    """A user-facing tool failure; the CLI prints the message and exits with status 2."""
