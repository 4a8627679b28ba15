"""ONNX Runtime: its options and registry entry (the runtime is in :mod:`.onnxruntime`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edged.backends.registry import BackendOptions, BackendSpec

MAX_REQUESTS = 8  # sessions in one process; the stage keeps frames within the output ring too


class OnnxRuntimeOptions(BackendOptions):
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        min_length=1,
        description="ONNX Runtime execution providers, in priority order.",
    )
    intra_op_threads: int | None = Field(
        None,
        ge=1,
        description="Threads inside one operator; default: one per core this process may use.",
    )
    inter_op_threads: int = Field(1, ge=1, description="Threads across operators (sequential=1).")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ONNX Runtime graph optimisation level."
    )
    spin_wait: bool | Literal["auto"] = Field(
        "auto",
        description="Let ORT's threads spin-wait inside a run (between its parallel sections), "
        "never after it. auto: only when they leave a core free for the other stages.",
    )
    requests: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_REQUESTS)] = Field(
        "auto",
        description="Frames in flight at once in the daemon: N sessions of the model, each "
        "running one frame on its own thread with the thread budget split between them (one "
        "session does not scale with threads: its tail layers and the other stages leave cores "
        "idle). auto: 1 (measured no faster here; see the README). The tools run one frame at "
        "a time and use one session with the whole budget.",
    )
    graph_rewrites: bool = Field(
        True,
        description="Rewrite, in memory, graph patterns ORT runs slowly (an inner-axis Softmax, "
        "e.g. YOLOv8's DFL: −5 ms per frame; Conv→Split: −2.5 ms) and feed uint8 NHWC images; "
        "results are unchanged.",
    )


PLUGIN = BackendSpec(
    name="onnxruntime",
    options=OnnxRuntimeOptions,
    loader="edged.backends.onnxruntime:load_onnxruntime",
    suffixes=(".onnx",),
    default_for=(".onnx",),
    runtime_module="onnxruntime",
    threads_field="intra_op_threads",
    description="ONNX Runtime (CPU): FP32, static and dynamic INT8 ONNX models",
)
