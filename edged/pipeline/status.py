"""The daemon's state as `edged ctl status` and the systemd STATUS line show it (pure)."""

from __future__ import annotations

from collections.abc import Mapping
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
        # Each camera not connected, as `edged ctl status` has it (source.connected false).
        down = [f"{camera}: {_why_not_connected(cam)}" for camera, cam in state.cameras.items()
                if not cam.source_connected]  # fmt: skip
        line += "".join(f"; {note}" for note in down)
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


def _why_not_connected(cam: PipelineState) -> str:
    return "ended" if cam.ended else cam.source_error or "connecting"


def pipeline_status(state: PipelineState, modes: Mapping[str, str]) -> dict[str, Any]:
    """Frames and sources as the status report shows them: each camera under ``cameras`` (by
    id, in config order, with its own effective mode from ``modes``), and the whole pipeline at
    the top (fps, frames, the sources' summary). ``camera_id`` and ``last_seq`` are at the top
    only when one camera runs: seqs count per camera, and several cameras have no one id (a
    program reads ``cameras``)."""
    pipeline_mode = combined_mode(list(modes.values())) if modes else "unknown"
    whole = _published_status(state, pipeline_mode)
    cameras = {camera: {"id": camera, **_published_status(cam, modes.get(camera, pipeline_mode))}
               for camera, cam in state.cameras.items()}  # fmt: skip
    if len(cameras) != 1:
        del whole["last_seq"]
        return {**whole, "cameras": cameras}
    (only,) = cameras
    # The camera's own seq: frames of a camera a reload removed may still be in flight.
    return {"camera_id": only, **whole, "last_seq": cameras[only]["last_seq"], "cameras": cameras}


def combined_mode(modes: list[str]) -> str:
    """The pipeline's mode: the cameras' one mode, or ``mixed`` (realtime files with streams)."""
    return modes[0] if len(set(modes)) == 1 else "mixed"


def _published_status(state: PipelineState, mode: str) -> dict[str, Any]:
    return {
        "fps": round(state.fps(), 2),
        "frames_published": state.published,
        "frames_dropped": state.dropped,
        "frame_errors": state.errors,
        "last_seq": state.last_published_seq,
        "source": {**state.source, "connected": state.source_connected, "ended": state.ended,
                   "mode": mode, "error": state.source_error,
                   "last_error": state.last_source_error, "reconnects": state.reconnects},
    }  # fmt: skip
