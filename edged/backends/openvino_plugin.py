"""OpenVINO: its options and registry entry (the runtime is in :mod:`.openvino`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edged.backends.registry import BackendOptions, BackendSpec, weights_beside

MAX_REQUESTS = 8  # the stage also keeps frames in flight within the output ring's slots


class OpenVinoOptions(BackendOptions):
    device: str = Field("CPU", description="OpenVINO device (CPU; GPU or NPU where present).")
    threads: int | None = Field(
        None, ge=1, description="Inference threads; default: one per core this process may use."
    )
    execution_mode: Literal["performance", "accuracy"] = Field(
        "performance",
        description="performance: OpenVINO may run float parts in bf16/f16 where the CPU has "
        "them (x86 AVX-512 BF16/AMX, Arm fp16); accuracy: float parts run in f32.",
    )
    requests: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_REQUESTS)] = Field(
        "auto",
        description="Frames in flight at once (OpenVINO infer requests, one CPU stream each): "
        "2 lets a second frame run while the first one's last layers leave cores idle, and "
        "while the other stages take a core. auto: 2 when the thread budget has 2 threads or "
        "more, else 1. 1: every thread on one frame (lowest latency per frame).",
    )
    performance_hint: Literal["auto", "latency", "throughput"] = Field(
        "auto",
        description="auto: latency (one stream) for one request in flight, throughput with one "
        "stream per request for more.",
    )
    cpu_pinning: bool = Field(
        False,
        description="Pin OpenVINO's threads to cores. Off: the other stages share the cores.",
    )
    model_cache: bool = Field(
        True,
        description="Keep compiled models in edged's cache dir (OpenVINO CACHE_DIR), so a "
        "restart or a swap back loads in a fraction of the time.",
    )
    uint8_input: bool = Field(
        True,
        description="Feed uint8 NHWC images; OpenVINO converts and scales inside the graph "
        "(the preprocess stage then skips its float conversion). Results are unchanged.",
    )


PLUGIN = BackendSpec(
    name="openvino",
    options=OpenVinoOptions,
    loader="edged.backends.openvino:load_openvino",
    suffixes=(".xml", ".onnx"),
    default_for=(".xml",),
    runtime_module="openvino",
    companions=weights_beside,
    threads_field="threads",
    description="OpenVINO (CPU): ONNX or IR (.xml + .bin), FP32 and NNCF INT8",
)
