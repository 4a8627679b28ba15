"""Hailo-8/8L through HailoRT: its options and registry entry (the runtime is in :mod:`.hailo`)."""

from __future__ import annotations

from pydantic import Field

from edged.backends.registry import BackendOptions, BackendSpec


class HailoOptions(BackendOptions):
    device_id: str | None = Field(None, description="PCIe device id; default: the first device.")
    timeout_ms: int = Field(2000, gt=0, description="Per-inference timeout on the NPU.")
    batch_size: int = Field(1, ge=1, description="Frames per NPU batch.")
    multi_process_service: bool = Field(
        False, description="Share the NPU with other processes through hailort.service."
    )
    group_id: str | None = Field(None, description="VDevice group id (multi-process service).")


PLUGIN = BackendSpec(
    name="hailo",
    options=HailoOptions,
    loader="edged.backends.hailo:load_hailo",
    suffixes=(".hef",),
    default_for=(".hef",),
    runtime_module="hailo_platform",
    description="Hailo-8 / Hailo-8L NPU through HailoRT (HEF files)",
)
