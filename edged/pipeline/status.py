"""The daemon's state as `edged ctl status` and the systemd STATUS line show it (pure)."""

from __future__ import annotations

from typing import Any

from edged.pipeline.messages import ModelDescriptor
from edged.pipeline.telemetry import PipelineState


def status_line(state: PipelineState) -> str:
    model = state.model
    variant = f"{model.name}/{model.variant}" if model else "no model"
    line = f"{state.fps():.1f} fps, {variant}, {state.published} frames published"
    if len(state.cameras) > 1:
        up = sum(1 for cam in state.cameras.values() if cam.source_connected)
        line += f"; {up}/{len(state.cameras)} cameras connected"
        if state.source_error:
            line += f"; {state.source_error}"
    elif not state.source_connected and not state.ended:
        line += f"; source: {state.source_error or 'connecting'}"
    return line


def model_status(model: ModelDescriptor | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {
        "name": model.name, "variant": model.variant, "backend": model.backend,
        "precision": model.precision, "path": model.path,
        "input": [model.input_width, model.input_height],
        "output_layout": model.output_layout,
    }  # fmt: skip


def pipeline_status(state: PipelineState, mode: str) -> dict[str, Any]:
    """Frames published and the source, as the status report shows them (the whole pipeline,
    and each camera under ``cameras``)."""
    return {
        **_published_status(state, mode),
        "cameras": {camera: _published_status(cam, mode) for camera, cam in state.cameras.items()},
    }


def _published_status(state: PipelineState, mode: str) -> dict[str, Any]:
    return {
        "fps": round(state.fps(), 2),
        "frames_published": state.published,
        "last_seq": state.last_published_seq,
        "source": {**state.source, "connected": state.source_connected, "ended": state.ended,
                   "mode": mode, "error": state.source_error,
                   "reconnects": state.reconnects},
    }  # fmt: skip
