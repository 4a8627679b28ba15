"""``--apply``: write the chosen variant into the config file as ``model.variant`` (nothing else
in the file changes: comments, order and formatting stay) and hot-swap a running daemon to it
through its control socket."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from edged.tools.errors import ToolError

_TOP_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)\s*:(?P<rest>.*)$")
_CHILD = re.compile(
    r"^(?P<indent>[ ]+)(?P<key>[A-Za-z_][\w-]*)\s*:(?P<value>[^#]*?)(?P<tail>\s*#.*)?$"
)


def set_model_variant(text: str, variant: str) -> str:
    """``text`` (a config's YAML) with ``model.variant`` set to ``variant``: the value replaced
    in place, or the key added as the model section's first line. Only block-style sections
    are edited; anything else is refused rather than rewritten (it would lose the comments)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", variant):
        raise ToolError(f"variant name {variant!r} is not a plain YAML scalar")
    lines = text.splitlines(keepends=True)
    start = next(
        (i for i, line in enumerate(lines) if (m := _TOP_KEY.match(line)) and m["key"] == "model"),
        None,
    )
    if start is None:
        raise ToolError("the config has no model section (model.manifest) to set a variant in")
    if _TOP_KEY.match(lines[start])["rest"].split("#")[0].strip():  # type: ignore[index]
        raise ToolError(
            "the config's model section is written inline (model: {...}); write it "
            "as a block to let edged tune edit it"
        )
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()),
        len(lines),
    )
    indent = None
    for i in range(start + 1, end):
        m = _CHILD.match(lines[i].rstrip("\r\n"))
        if m is None:
            continue
        indent = indent or m["indent"]
        if m["indent"] == indent and m["key"] == "variant":
            newline = lines[i][len(lines[i].rstrip("\r\n")) :]
            lines[i] = f"{indent}variant: {variant}{m['tail'] or ''}{newline}"
            return _checked("".join(lines), variant)
    newline = "\r\n" if lines[start].endswith("\r\n") else "\n"
    lines.insert(start + 1, f"{indent or '  '}variant: {variant}{newline}")
    return _checked("".join(lines), variant)


def _checked(text: str, variant: str) -> str:
    """The edit must parse and mean what it says (a safety net for unusual layouts)."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or str((data.get("model") or {}).get("variant")) != variant:
        raise ToolError("could not set model.variant in the config without rewriting it")
    return text


def apply_to_config(config_path: Path, variant: str) -> bool:
    """Write ``variant`` into the config file; False when it already named it."""
    try:
        text = config_path.read_text()
    except OSError as exc:
        raise ToolError(f"{config_path}: {exc.strerror}") from None
    edited = set_model_variant(text, variant)
    if edited == text:
        return False
    tmp = config_path.with_name(f".{config_path.name}.tune")
    tmp.write_text(edited)
    tmp.replace(config_path)  # never half a config
    return True


def swap_running(endpoint: str, variant: str, timeout_s: float = 120.0) -> dict[str, Any] | None:
    """Ask the daemon at ``endpoint`` to swap to ``variant``: its reply, or None when no daemon
    listens there."""
    from edged.control import NotRunning, call

    try:
        return call(endpoint, "swap", variant, timeout_s)
    except NotRunning:
        return None
