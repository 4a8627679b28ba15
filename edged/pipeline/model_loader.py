"""Load a resolved variant into a warmed-up backend and describe it for the other stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edged.backends import Backend, BackendError, load_backend
from edged.config import InferenceConfig, backend_options
from edged.labels import COCO80, BadNames, labels_from_metadata, load_labels
from edged.model_files import BadModelFile
from edged.models import ResolvedVariant
from edged.pipeline.messages import ModelDescriptor
from edged.pipeline.ring import aligned
from edged.postprocess.decoders import (
    OutputLayout,
    UnsupportedLayoutError,
    detect_layout,
)
from edged.postprocess.raw_heads import HEAD_METADATA_KEY, raw_head_of


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
    head = raw_head_of(backend.metadata)  # a model cut at its head by the ORT rewrites
    try:
        labels = resolve_labels(resolved.labels, backend.metadata)
        if resolved.output_format != "auto" and head is None:
            layout = OutputLayout(resolved.output_format)
        else:
            count = len(labels) if labels else None
            layout = detect_layout(backend.output_shapes, count, head)
    except BadNames as exc:  # the file's own metadata: loading it again cannot help
        raise BadModelFile(f"{resolved.path.name}: {exc}") from None
    except (UnsupportedLayoutError, ValueError, OSError) as exc:
        raise BackendError(f"{resolved.path.name}: {exc}") from exc
    if labels is None:
        count = (
            (head.num_classes if head else None)
            or class_count(layout, backend.output_shapes[0])
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
        head=backend.metadata.get(HEAD_METADATA_KEY, ""),
    )


def check_fits(backend: Backend, max_input_bytes: int, max_output_bytes: int) -> None:
    """Refuse a model whose tensors would not fit the shared-memory ring slots."""
    spec = backend.input
    if spec.nbytes > max_input_bytes:
        side = int((max_input_bytes / (3 * np.dtype(spec.dtype).itemsize)) ** 0.5)
        raise BackendError(
            f"input {spec.width}x{spec.height} needs {spec.nbytes} bytes per tensor; the tensor "
            f"ring holds {max_input_bytes} ({spec.dtype} inputs up to {side}x{side})"
        )
    if all(d > 0 for shape in backend.output_shapes for d in shape):
        needed = sum(aligned(int(np.prod(shape)) * 4) for shape in backend.output_shapes)
        if needed > max_output_bytes:
            raise BackendError(
                f"outputs need {needed / 2**20:.1f} MiB per frame, more than "
                f"pipeline.max_output_mb ({max_output_bytes / 2**20:.1f} MiB); raise it"
            )


def load_model(
    resolved: ResolvedVariant,
    inference: InferenceConfig,
    warmup_runs: int,
    generation: int,
    limits: tuple[int, int] | None = None,
    in_flight: bool = False,
) -> tuple[Backend, ModelDescriptor]:
    """Load + warm up + describe (+ check it fits ``limits``: input, output bytes).
    ``in_flight``: the caller can keep several frames in flight (see ``load_backend``).

    On any failure nothing stays loaded.
    """
    options = backend_options(inference, resolved.backend, dict(resolved.options))
    backend = load_backend(resolved.backend, Path(resolved.path), options, warmup_runs, in_flight)
    try:
        if limits is not None:
            check_fits(backend, *limits)
        return backend, describe(resolved, backend, generation)
    except BackendError:
        backend.close()
        raise
