"""NCNN: its options and registry entry (the runtime is in :mod:`.ncnn`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edged.backends.registry import BackendOptions, BackendSpec, weights_beside


class NcnnOptions(BackendOptions):
    threads: int | None = Field(
        None, ge=1, description="Inference threads; default: one per core this process may use."
    )
    fp16_storage: bool = Field(
        False, description="Keep weights and activations in fp16 (halves memory traffic)."
    )
    fp16_arithmetic: bool = Field(
        False, description="Compute in fp16 where the CPU can (Arm v8.2+: the Pi 5's A76)."
    )
    packing: bool = Field(True, description="NCNN's packed (SIMD-friendly) memory layout.")
    spin_wait: bool | Literal["auto"] = Field(
        "auto",
        description="Let NCNN's OpenMP threads spin-wait (OMP_WAIT_POLICY=ACTIVE). auto: only "
        "when they leave a core free for the other stages (as for ONNX Runtime).",
    )


PLUGIN = BackendSpec(
    name="ncnn",
    options=NcnnOptions,
    loader="edged.backends.ncnn:load_ncnn",
    suffixes=(".param",),
    default_for=(".param",),
    runtime_module="ncnn",
    companions=weights_beside,
    threads_field="threads",
    description="NCNN (CPU): .param + .bin from pnnx, FP32 or FP16",
)
