"""Reading the config file again: what changed, and the reloads waiting for a swap to end."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.config import EdgedConfig, apply_overrides, load_config

MAX_DEFERRED_RELOADS = 4  # control clients whose reload waits for a swap to end
# Sections a reload applies: the model (a swap), the cameras (edged.pipeline.camera_changes).
APPLIED_BY_RELOAD = ("model", "cameras", "source", "camera_id")


@dataclass(frozen=True)
class Reloaded:
    config: EdgedConfig
    changed: list[str]  # top-level sections that differ from the running config
    # Of those, what a running daemon cannot apply (all but the model and the cameras).
    needs_restart: list[str]


def reread_config(path: Path, overrides: dict[str, Any], running: EdgedConfig,
                  check: Callable[[EdgedConfig], object]) -> Reloaded:  # fmt: skip
    """The file with the command line's overrides applied again (or every overridden section
    would read as changed); ``check`` refuses what the running daemon cannot take. Raises
    ConfigError."""
    new = load_config(path)
    if overrides:
        new = apply_overrides(new, overrides)
    check(new)
    changed = [name for name in type(new).model_fields
               if getattr(new, name) != getattr(running, name)]  # fmt: skip
    return Reloaded(new, changed, [n for n in changed if n not in APPLIED_BY_RELOAD])


class DeferredReloads:
    """Reloads asked for during a swap (SIGHUP: None; control clients: their identity): they
    run when the swap ends, so a model change is not refused for arriving at a bad time."""

    def __init__(self, limit: int = MAX_DEFERRED_RELOADS) -> None:
        self._waiting: deque[bytes | None] = deque()
        self._limit = limit

    def add(self, identity: bytes | None) -> bool:
        """False when too many wait already. A signal's reload waiting already covers another
        signal (it reads the file when it runs)."""
        if identity is None and None in self._waiting:
            return True
        if len(self._waiting) >= self._limit:
            return False
        self._waiting.append(identity)
        return True

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def pop(self) -> bytes | None:
        return self._waiting.popleft()

    def take_all(self) -> list[bytes | None]:
        waiting = list(self._waiting)
        self._waiting.clear()
        return waiting
