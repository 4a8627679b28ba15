"""Load a resolved variant into a warmed-up backend and describe it for the other stages."""

from __future__ import annotations

from pathlib import Path

from edged.backends import Backend, BackendError, load_backend
from edged.config import InferenceConfig
from edged.labels import COCO80, labels_from_metadata, load_labels
from edged.models import ResolvedVariant
from edged.pipeline.messages import ModelDescriptor
from edged.postprocess.decoders import OutputLayout, UnsupportedLayoutError, detect_layout


def resolve_labels(source: str, metadata: dict[str, str]) -> tuple[str, ...] | None:
    """Explicit file > model metadata > ``None`` (decided once the class count is known)."""
    if source == "coco80":
        return COCO80
    if source != "auto":
        return load_labels(source)
    return labels_from_metadata(metadata)


def class_count(layout: OutputLayout, shape: tuple[int, ...]) -> int | None:
    if layout is OutputLayout.YOLOV8:
        return shape[1] - 4
    if layout is OutputLayout.YOLOV5:
        return shape[2] - 5
    return None


def describe(resolved: ResolvedVariant, backend: Backend, generation: int) -> ModelDescriptor:
    """Labels and output layout for a loaded backend; raises BackendError if undecodable."""
    try:
        labels = resolve_labels(resolved.labels, backend.metadata)
        if resolved.output_format != "auto":
            layout = OutputLayout(resolved.output_format)
        else:
            layout = detect_layout(backend.output_shapes, len(labels) if labels else None)
    except (UnsupportedLayoutError, ValueError, OSError) as exc:
        raise BackendError(f"{resolved.path.name}: {exc}") from exc
    if labels is None:
        count = (
            class_count(layout, backend.output_shapes[0])
            or int(backend.metadata.get("num_classes", 0))  # Hailo NMS HEFs say it
            or len(COCO80)
        )
        labels = COCO80 if count == len(COCO80) else tuple(f"class{i}" for i in range(count))
    spec = backend.input
    return ModelDescriptor(
        key=f"{resolved.name}/{resolved.variant}/{generation}",
        name=resolved.name,
        variant=resolved.variant,
        backend=resolved.backend,
        precision=resolved.precision or backend.precision,
        input_width=spec.width,
        input_height=spec.height,
        input_layout=spec.layout,
        input_dtype=spec.dtype,
        output_layout=layout.value,
        labels=tuple(labels),
        path=str(resolved.path),
    )


def load_model(
    resolved: ResolvedVariant, inference: InferenceConfig, warmup_runs: int, generation: int
) -> tuple[Backend, ModelDescriptor]:
    """Load + warm up + describe; on any failure nothing stays loaded."""
    options = inference.onnxruntime if resolved.backend == "onnxruntime" else inference.hailo
    backend = load_backend(resolved.backend, Path(resolved.path), options, warmup_runs)
    try:
        return backend, describe(resolved, backend, generation)
    except BackendError:
        backend.close()
        raise
