"""Which stages share a process.

Every stage keeps its own logic, sockets to the supervisor, counters and latency; a *layout*
only decides which of them run together in one process. Neighbours in one process hand frames
on by a plain call instead of a datagram: on this 2-core VM each hop between processes costs a
wake-up of a sleeping process (~0.2 ms, more with cold caches) and every Python process ~40 MB.

- ``fused`` (default): capture+preprocess | infer | postprocess+publish — inference stays alone
  so the light stages overlap with it; the light stages pair up around it.
- ``isolated``: one process per stage (fault isolation per stage, e.g. to debug one).
"""

from __future__ import annotations

from edged.pipeline.messages import CAPTURE, INFER, POSTPROCESS, PREPROCESS, PUBLISH, STAGE_ORDER

ProcessGroup = tuple[str, ...]

LAYOUTS: dict[str, tuple[ProcessGroup, ...]] = {
    "fused": ((CAPTURE, PREPROCESS), (INFER,), (POSTPROCESS, PUBLISH)),
    "isolated": tuple((stage,) for stage in STAGE_ORDER),
}


def process_groups(layout: str) -> tuple[ProcessGroup, ...]:
    """The process groups of ``layout``, in pipeline order."""
    return LAYOUTS[layout]


def process_name(group: ProcessGroup) -> str:
    """How a process is named in logs, metrics and ``ps``: ``capture+preprocess``."""
    return "+".join(group)
