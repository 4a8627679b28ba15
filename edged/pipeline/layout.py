"""Which stages share a process.

Every stage keeps its own logic, sockets to the supervisor, counters and latency; a *layout*
only decides which of them run together in one process. Neighbours in one process hand frames
on by a plain call instead of a datagram: on this 2-core VM each hop between processes costs a
wake-up of a sleeping process (~0.2 ms, more with cold caches) and every Python process ~40 MB.

- ``fused`` (default): capture+preprocess | infer | postprocess+publish — inference stays alone
  so the light stages overlap with it; the light stages pair up around it.
- ``isolated``: one process per stage (fault isolation per stage, e.g. to debug one).

Capture and preprocess run once per camera (a stage *instance*: the stage name plus a camera
tag, ``capture[cam1]``); inference, postprocess and publish are shared by every camera. A daemon
started with one camera keeps the plain names (``capture``, ``capture+preprocess``).
"""

from __future__ import annotations

from edged.pipeline.messages import CAPTURE, INFER, POSTPROCESS, PREPROCESS, PUBLISH, STAGE_ORDER

ProcessGroup = tuple[str, ...]

LAYOUTS: dict[str, tuple[ProcessGroup, ...]] = {
    "fused": ((CAPTURE, PREPROCESS), (INFER,), (POSTPROCESS, PUBLISH)),
    "isolated": tuple((stage,) for stage in STAGE_ORDER),
}


# The stages that run once per camera; the others serve every camera.
PER_CAMERA: tuple[str, ...] = (CAPTURE, PREPROCESS)


def process_groups(layout: str) -> tuple[ProcessGroup, ...]:
    """The process groups of ``layout``, in pipeline order."""
    return LAYOUTS[layout]


def per_camera(group: ProcessGroup) -> bool:
    """Does ``group`` run once per camera? (Layouts never mix per-camera and shared stages.)"""
    return group[0] in PER_CAMERA


def instance_name(stage: str, tag: str = "") -> str:
    """A stage instance's name (supervisor identity, inbox): ``capture`` or ``capture[cam1]``."""
    return f"{stage}[{tag}]" if tag else stage


def process_name(group: ProcessGroup, tag: str = "") -> str:
    """How a process is named in logs, metrics and ``ps``: ``capture+preprocess[cam1]``."""
    return instance_name("+".join(group), tag)
