"""The ``preview:`` section of the config (added to EdgedConfig as ``preview``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PreviewConfig(BaseModel):
    # Same strictness as edged.config._Strict (not imported: edged.config imports this module).
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    enabled: bool = Field(
        False,
        description=(
            "Serve the live preview (/preview, /preview.mjpg on the http server) and publish "
            "frames.<camera_id>. Frames are only encoded while someone watches."
        ),
    )
    fps: float = Field(5.0, gt=0, le=30, description="Most preview frames per second.")
    width: int = Field(
        640, ge=64, le=3840, description="JPEG width; height follows the aspect; never upscaled."
    )
    jpeg_quality: int = Field(70, ge=10, le=100, description="JPEG quality (10-100).")
    publish_topic: bool = Field(
        False,
        description=(
            "Also send the JPEGs on publish.endpoint as frames.<camera_id> (multipart: topic, "
            "JSON header, JPEG) for remote viewers: camera pictures to whoever may subscribe. "
            "Off by default (it was on before)."
        ),
    )
    control: bool = Field(
        False,
        description=(
            "Let the /preview page swap model variants (POST /preview/swap, the same control "
            "path as `edged ctl swap`). Anyone who can reach http.host:http.port can then swap."
        ),
    )
    max_viewers: int = Field(
        4, ge=1, le=64, description="Simultaneous /preview.mjpg streams (more get 503)."
    )
