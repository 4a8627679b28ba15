"""The ``monitor:`` section of the config (added to EdgedConfig as ``monitor``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    # Same strictness as edged.config._Strict (not imported: edged.config imports this module).
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


class ShadowConfig(_Strict):
    enabled: bool = Field(
        False,
        description=(
            "Now and then, run a frame the daemon published through the reference variant as "
            "well, in a low-priority helper process, and compare the detections."
        ),
    )
    every_s: float = Field(
        10.0, gt=0, le=86400, description="At most one frame checked per this many seconds."
    )
    variant: str = Field(
        "fp32",
        min_length=1,
        description=(
            "The reference: a variant of model.manifest (with model.path: 'default', the "
            "served file itself)."
        ),
    )
    min_agreement: float = Field(
        0.8,
        ge=0,
        le=1,
        description=(
            "Floor of the agreement (matched boxes: 2·matched / all boxes, over the last "
            "`window` checks); below it: a WARNING and a note in systemd's STATUS."
        ),
    )
    max_cost_percent: float = Field(
        5.0,
        gt=0,
        le=100,
        description=(
            "The helper's CPU time stays within this share of the live inference time: it "
            "skips checks (counted) rather than exceed it."
        ),
    )
    window: int = Field(10, ge=1, le=10000, description="Checks pooled into the reported figures.")
    priority: Literal["idle", "nice", "normal"] = Field(
        "idle",
        description=(
            "The helper's CPU priority. idle: SCHED_IDLE, only cycles nothing else wants (on a "
            "saturated CPU it may never check); nice: nice 19, a small share even then; "
            "normal: like any process (tests, benchmarks)."
        ),
    )


class MonitorConfig(_Strict):
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
