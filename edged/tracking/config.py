"""The ``tracking:`` section of the config (added to EdgedConfig as ``tracking``).

Zones and lines are given in normalised 0-1 coordinates (default; they survive a resolution
change) or in source pixels. Pixel coordinates are checked against ``source.width/height`` when
the config sets them (see edged.config), and against the real frame when it arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from edged.tracking.geometry import ANCHORS, polygon_area, self_intersection

Segment = tuple[tuple[float, float], tuple[float, float]]
Units = Literal["normalized", "pixels"]
AnchorName = Literal["bottom_center", "center", "top_center", "bottom_left", "bottom_right"]
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # a metric label value and a topic-safe name
assert set(AnchorName.__args__) == set(ANCHORS)  # type: ignore[attr-defined]


class _Strict(BaseModel):
    # Same strictness as edged.config._Strict (not imported: edged.config imports this module).
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


class _Shape(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Names the zone/line in events, metrics.")
    units: Units = Field(
        "normalized", description="normalized: 0-1 of the frame's width/height; pixels: source px."
    )
    labels: list[str] | None = Field(
        None, description="Only tracks of these labels count (default: every label)."
    )
    anchor: AnchorName = Field(
        "bottom_center",
        description="The point of a box that enters zones and crosses lines (feet: bottom_center).",
    )

    @field_validator("labels")
    @classmethod
    def _labels_not_empty(cls, labels: list[str] | None) -> list[str] | None:
        if labels is not None and not labels:
            raise ValueError("empty label filter: list labels, or leave it out for every label")
        return labels


def _check_points(points: Sequence[tuple[float, float]], info: ValidationInfo) -> None:
    units = info.data.get("units", "normalized")
    for i, (x, y) in enumerate(points):
        if x < 0 or y < 0 or (units == "normalized" and (x > 1 or y > 1)):
            limit = "0-1" if units == "normalized" else ">= 0"
            raise ValueError(f"point {i} ({x:g}, {y:g}) is outside the frame ({limit})")


class ZoneConfig(_Shape):
    polygon: list[tuple[float, float]] = Field(
        min_length=3, max_length=64, description="Vertices in order (closed automatically)."
    )

    @field_validator("polygon")
    @classmethod
    def _simple_polygon(
        cls, polygon: list[tuple[float, float]], info: ValidationInfo
    ) -> list[tuple[float, float]]:
        _check_points(polygon, info)
        crossing = self_intersection(polygon)
        if crossing is not None:
            i, j = crossing
            raise ValueError(f"polygon is self-intersecting (edge {i} meets edge {j})")
        if polygon_area(polygon) == 0:
            raise ValueError("polygon has no area (its points are on one line)")
        return polygon


class LineConfig(_Shape):
    points: Segment = Field(
        description="From A to B. Directions are as seen standing at A facing B on the image: "
        "left_to_right or right_to_left. A line drawn left to right counts moving down as "
        "left_to_right; one drawn top to bottom counts moving right as right_to_left (draw it "
        "bottom to top to have that left_to_right)."
    )

    @field_validator("points")
    @classmethod
    def _proper_segment(cls, points: Segment, info: ValidationInfo) -> Segment:
        _check_points(points, info)
        if points[0] == points[1]:
            raise ValueError("the line's two points are the same")
        return points


class TrackingConfig(_Strict):
    enabled: bool = Field(False, description="Track objects; publish track_id and events.<id>.")
    tracker: Literal["bytetrack"] = Field(
        "bytetrack", description="Motion-only ByteTrack (Kalman + IoU, two score passes)."
    )
    track_buffer_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="A track not matched for this long ends (seconds of frame time, not frames, "
        "so dropped frames of a live camera do not shorten it).",
    )
    min_hits: int = Field(
        2, ge=1, le=100, description="Matched frames before a track gets an ID and events."
    )
    high_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Detections at or above this score start tracks and match first; those "
        "below (down to postprocess.conf_threshold) only keep existing tracks alive.",
    )
    match_iou: float = Field(0.25, gt=0, le=1, description="Least IoU to match a track.")
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=32)
    lines: list[LineConfig] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _unique_names(self) -> TrackingConfig:
        for kind, shapes in (("zones", self.zones), ("lines", self.lines)):
            names = [s.name for s in shapes]
            dup = next((n for n in names if names.count(n) > 1), None)
            if dup is not None:
                raise ValueError(f"{kind}: name {dup!r} is used twice")
        return self


def pixel_bounds_errors(cfg: TrackingConfig, width: int, height: int) -> list[tuple[str, str]]:
    """``(field.path, reason)`` for every pixel point outside a ``width``×``height`` frame."""
    errors = []
    for kind, shapes in (("zones", cfg.zones), ("lines", cfg.lines)):
        for i, shape in enumerate(shapes):
            if shape.units != "pixels":
                continue
            field = "polygon" if isinstance(shape, ZoneConfig) else "points"
            points = shape.polygon if isinstance(shape, ZoneConfig) else shape.points
            for j, (x, y) in enumerate(points):
                if x > width or y > height:
                    errors.append((f"tracking.{kind}.{i}.{field}",
                                   f"point {j} ({x:g}, {y:g}) is outside the {width}x{height} "
                                   "frame"))  # fmt: skip
    return errors
