"""Draw a frame's detections, their track IDs, the tracking zones and lines, and a status
line onto a (downscaled) image: pure, no I/O.

Boxes come in source pixels (as published in ``detections.<camera_id>``) and are scaled to the
preview image here, so the preview always shows exactly what subscribers were told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from edged.tracking.config import TrackingConfig

# BGR. Vivid colours that rarely occur in camera scenes, so boxes stand out (and tests can find
# them): person magenta, bicycle yellow, car cyan, then the rest of the wheel.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 0, 255),  # 0 person: magenta
    (0, 255, 255),  # 1 bicycle: yellow
    (255, 255, 0),  # 2 car: cyan
    (0, 128, 255),  # orange
    (0, 255, 128),  # lime
    (255, 128, 0),  # azure
    (128, 0, 255),  # rose
    (255, 0, 128),  # violet
    (128, 255, 0),  # spring green
    (0, 0, 255),  # red
    (0, 255, 0),  # green
    (255, 0, 0),  # blue
)
OVERLAY = (255, 255, 255)  # zones and lines: white, with a dark outline to read on any scene
OVERLAY_EDGE = (0, 0, 0)
HUD_BG = (0, 0, 0)
HUD_FG = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Overlay:
    """A tracking zone (closed polygon) or line (A to B, drawn as an arrow) to draw."""

    name: str
    points: tuple[tuple[float, float], ...]
    closed: bool
    normalized: bool  # 0-1 of the frame; else source pixels


def tracking_overlays(cfg: TrackingConfig) -> tuple[Overlay, ...]:
    """The zones and lines of a tracking config, to draw on every preview frame."""
    if not cfg.enabled:
        return ()
    zones = (Overlay(z.name, tuple(z.polygon), True, z.units == "normalized") for z in cfg.zones)
    lines = (Overlay(ln.name, tuple(ln.points), False, ln.units == "normalized")
             for ln in cfg.lines)  # fmt: skip
    return (*zones, *lines)


def draw_overlays(image: np.ndarray, overlays: Sequence[Overlay],
                  source_size: tuple[int, int]) -> None:  # fmt: skip
    h, w = image.shape[:2]
    thickness, scale, text = _style(w)
    for o in overlays:
        fx, fy = (w, h) if o.normalized else (w / source_size[0], h / source_size[1])
        pts = np.array([(round(x * fx), round(y * fy)) for x, y in o.points], np.int32)
        for color, extra in ((OVERLAY_EDGE, 2), (OVERLAY, 0)):  # outline, then the line itself
            if o.closed:
                cv2.polylines(image, [pts], True, color, thickness + extra, cv2.LINE_AA)
            else:
                tip = min(0.5, 12 / max(1.0, _length(pts)))  # a ~12 px head whatever the length
                a, b = tuple(pts[0]), tuple(pts[1])
                cv2.arrowedLine(image, a, b, color, thickness + extra, cv2.LINE_AA, tipLength=tip)
        x, y = int(pts[:, 0].min()), int(pts[:, 1].min())
        org = (max(0, x + 3), max(12, y + 14))
        cv2.putText(image, o.name, org, FONT, scale, OVERLAY_EDGE, text + 2, cv2.LINE_AA)
        cv2.putText(image, o.name, org, FONT, scale, OVERLAY, text, cv2.LINE_AA)


def _length(pts: np.ndarray) -> float:
    return float(np.hypot(*(pts[1] - pts[0])))


def color_for(class_id: int) -> tuple[int, int, int]:
    """The BGR colour boxes of ``class_id`` are drawn in."""
    return PALETTE[class_id % len(PALETTE)]


def preview_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """(w, h) of the preview: ``max_width`` wide at most (never upscaled), same aspect ratio."""
    if width <= max_width:
        return width, height
    return max_width, max(1, round(height * max_width / width))


def _style(width: int) -> tuple[int, float, int]:
    """Box thickness, font scale, text thickness for an image ``width`` pixels wide."""
    thickness = max(1, round(width / 320))
    return thickness, max(0.35, width / 1400), 1


def hud_height(width: int) -> int:
    """Height of the status band drawn along the bottom edge."""
    _, scale, text = _style(width)
    (_, h), base = cv2.getTextSize("Ag", FONT, scale, text)
    return h + base + 8


def hud_text(message: Mapping[str, Any], fps: float) -> str:
    """``yolov5n/fp32 · 12.3 fps · e2e 65 ms · #42`` from a detections message."""
    model = message.get("model") or {}
    e2e = (message.get("latency_ms") or {}).get("end_to_end")
    parts = [f"{model.get('name', '?')}/{model.get('variant', '?')}", f"{fps:.1f} fps"]
    if e2e is not None:
        parts.append(f"e2e {e2e:.0f} ms")
    parts.append(f"#{message.get('seq', '?')}")
    return "  ".join(parts)


def annotate(
    image: np.ndarray,
    detections: Sequence[Mapping[str, Any]],
    source_size: tuple[int, int],
    status: str = "",
    overlays: Sequence[Overlay] = (),
) -> np.ndarray:
    """Draw ``detections`` (boxes in ``source_size`` pixels) and ``status`` onto ``image``.

    Draws in place (the caller owns a private copy) and returns ``image``. Labels read
    ``person 0.87`` (``#17 person 0.87`` with a track ID) on a filled tab of the box colour;
    the status line sits in a dark band along the bottom edge so it never hides a label at the
    top. ``overlays`` (tracking zones and lines) are drawn under the boxes.
    """
    h, w = image.shape[:2]
    sx, sy = w / source_size[0], h / source_size[1]
    thickness, scale, text = _style(w)
    draw_overlays(image, overlays, source_size)
    for det in detections:
        x1, y1, x2, y2 = det["box"]
        p1 = (round(x1 * sx), round(y1 * sy))
        p2 = (round(x2 * sx), round(y2 * sy))
        color = color_for(int(det["class_id"]))
        cv2.rectangle(image, p1, p2, color, thickness, cv2.LINE_AA)
        track = det.get("track_id")
        label = f"{'' if track is None else f'#{track} '}{det['label']} {det['confidence']:.2f}"
        (tw, th), base = cv2.getTextSize(label, FONT, scale, text)
        # The tab sits above the box, or inside it when the box touches the top edge.
        top = p1[1] - th - base - 2 if p1[1] - th - base - 2 >= 0 else p1[1]
        left = max(0, min(p1[0], w - tw - 4))  # shifted left rather than cut at the edge
        cv2.rectangle(image, (left, top), (left + tw + 4, top + th + base + 2), color, -1)
        ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(image, label, (left + 2, top + th + 1), FONT, scale, ink, text, cv2.LINE_AA)
    if status:
        band = hud_height(w)
        cv2.rectangle(image, (0, h - band), (w, h), HUD_BG, -1)
        (_, th), base = cv2.getTextSize(status, FONT, scale, text)
        baseline_y = h - (band - th) // 2 - max(0, base // 2)
        cv2.putText(image, status, (4, baseline_y), FONT, scale, HUD_FG, text, cv2.LINE_AA)
    return image
