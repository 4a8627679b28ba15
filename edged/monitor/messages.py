"""What travels between the monitor's parts: small frozen dataclasses, pickled.

publish tap ──ShadowSample (+ the frame's pixels)──▶ helper ──ShadowReport──▶ supervisor

Both sockets live in the daemon's private runtime directory (only its own user reaches them),
as the stages' channels do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edged.monitor.agreement import Agreement

RESULTS = ("ok", "below_floor", "skipped", "dropped", "error")


def sample_endpoint(runtime_dir: Path) -> str:
    """Frames to check (PULL bound by the helper, PUSH connected by the publish stage)."""
    return f"ipc://{runtime_dir / 'shadow.sock'}"


def report_endpoint(runtime_dir: Path) -> str:
    """Reports of checks (PULL bound by the supervisor, PUSH connected by the helper)."""
    return f"ipc://{runtime_dir / 'shadow-reports.sock'}"


@dataclass(frozen=True)
class ShadowSample:
    """A published frame's detections from the live variant; its pixels follow as the next
    message part (``height × width × 3`` uint8 BGR, in source pixels like the boxes)."""

    seq: int
    camera_id: str
    width: int
    height: int
    live_variant: str
    boxes: np.ndarray  # N×4 float32 xyxy, source pixels
    scores: np.ndarray
    class_ids: np.ndarray
    # Live inference seconds since the previous sample went out: what the helper's CPU budget
    # is a share of.
    infer_s: float
    dropped: int  # samples the tap could not send so far (helper busy, stopped or absent)


@dataclass(frozen=True)
class ShadowReport:
    """One sample's fate in the helper: ``checked`` (with ``agreement``: the counts of this
    frame), ``skipped`` (over the CPU budget) or ``error``."""

    outcome: str
    seq: int
    camera_id: str
    live_variant: str
    agreement: Agreement | None
    dropped: int  # the tap's count, as the sample carried it
    cpu_s: float  # the helper's CPU seconds since its model was loaded
    infer_s: float  # live inference seconds received since then
    error: str = ""
