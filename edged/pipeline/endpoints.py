"""Where the pipeline's private sockets live: socket files in the runtime directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Endpoints:
    runtime_dir: Path

    def stage_inbox(self, stage: str) -> Path:
        """Frames flowing into ``stage``: a Unix datagram socket (see edged.pipeline.handoff)."""
        return self.runtime_dir / f"{stage}.in"

    def ring_release(self, ring: str) -> str:
        """Slot releases for ``ring`` (PULL bound by the ring's producer)."""
        return f"ipc://{self.runtime_dir / f'{ring}.free'}"

    @property
    def supervisor(self) -> str:
        """Stage events and commands (ROUTER on the supervisor, DEALER per stage)."""
        return f"ipc://{self.runtime_dir / 'supervisor.sock'}"

    @property
    def control(self) -> str:
        """The default `edged ctl` socket."""
        return f"ipc://{self.runtime_dir / 'control.sock'}"
