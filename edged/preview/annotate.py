"""Draw a frame's detections and a status line onto a (downscaled) image: pure, no I/O.

Boxes come in source pixels (as published in ``detections.<camera_id>``) and are scaled to the
preview image here, so the preview always shows exactly what subscribers were told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

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
HUD_BG = (0, 0, 0)
HUD_FG = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


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
) -> np.ndarray:
    """Draw ``detections`` (boxes in ``source_size`` pixels) and ``status`` onto ``image``.

    Draws in place (the caller owns a private copy) and returns ``image``. Labels read
    ``person 0.87`` on a filled tab of the box colour; the status line sits in a dark band
    along the bottom edge so it never hides a label at the top.
    """
    h, w = image.shape[:2]
    sx, sy = w / source_size[0], h / source_size[1]
    thickness, scale, text = _style(w)
    for det in detections:
        x1, y1, x2, y2 = det["box"]
        p1 = (round(x1 * sx), round(y1 * sy))
        p2 = (round(x2 * sx), round(y2 * sy))
        color = color_for(int(det["class_id"]))
        cv2.rectangle(image, p1, p2, color, thickness, cv2.LINE_AA)
        label = f"{det['label']} {det['confidence']:.2f}"
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
