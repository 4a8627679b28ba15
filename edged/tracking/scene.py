"""A constructed tracking sequence with exact ground truth: real COCO object crops moving along
known paths over a real background (a COCO image with its labelled objects inpainted away).

Used by ``edged tracking mot`` to measure the tracker through the real daemon: the video is
written with OpenCV, the ground truth (boxes, IDs, line crossings) comes from the paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edged.tracking.geometry import segments_intersect, side_of_line

W, H = 768, 432
FPS = 15.0
# The counting line of the scene: vertical, through the middle, drawn top to bottom.
LINE = ((0.5, 0.0), (0.5, 1.0))


@dataclass(frozen=True)
class Actor:
    """One object: a crop, and its top-left corner at each frame it is on screen."""

    gt_id: int
    label: str
    crop: np.ndarray  # BGR
    first: int
    waypoints: tuple[tuple[int, float, float], ...]  # (frame, x, y), linear in between

    @property
    def last(self) -> int:
        return self.waypoints[-1][0]

    def box(self, frame: int) -> tuple[float, float, float, float] | None:
        if not self.first <= frame <= self.last:
            return None
        frames = [w[0] for w in self.waypoints]
        x = float(np.interp(frame, frames, [w[1] for w in self.waypoints]))
        y = float(np.interp(frame, frames, [w[2] for w in self.waypoints]))
        h, w = self.crop.shape[:2]
        return x, y, x + w, y + h


def _labels(root: Path) -> dict[Path, list[tuple[int, np.ndarray]]]:
    out = {}
    for image in sorted((root / "images").rglob("*.jpg")):
        txt = root / "labels" / image.parent.name / f"{image.stem}.txt"
        rows = [line.split() for line in txt.read_text().splitlines()] if txt.exists() else []
        out[image] = [(int(r[0]), np.array([float(v) for v in r[1:5]])) for r in rows if r]
    return out


def _xyxy(norm: np.ndarray, w: int, h: int) -> np.ndarray:
    cx, cy, bw, bh = norm
    return np.array([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / max(1e-9, (a[2] - a[0]) * (a[3] - a[1]))


def background(root: Path) -> np.ndarray:
    """The COCO image whose labelled objects cover the least of it, objects inpainted away."""
    labels = _labels(root)

    def covered(item: tuple[Path, list]) -> float:
        return sum(float(n[2] * n[3]) for _, n in item[1]) if item[1] else 1.0

    path, objects = min(((p, o) for p, o in labels.items() if o), key=covered)
    image = cv2.imread(str(path))
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for _, norm in objects:
        x1, y1, x2, y2 = _xyxy(norm, w, h)
        cv2.rectangle(mask, (int(x1) - 4, int(y1) - 4), (int(x2) + 4, int(y2) + 4), 255, -1)
    clean = cv2.inpaint(image, mask, 5, cv2.INPAINT_TELEA)
    return cv2.resize(clean, (W, H), interpolation=cv2.INTER_AREA)


def crops(
    root: Path, names: list[str], want: dict[str, int], height: int
) -> list[tuple[str, np.ndarray]]:
    """Large, whole, unoccluded objects of the wanted classes, scaled to ``height`` pixels."""
    found: list[tuple[float, str, np.ndarray]] = []
    for path, objects in _labels(root).items():
        image = None
        for k, (cls, norm) in enumerate(objects):
            label = names[cls]
            if label not in want:
                continue
            if image is None:
                image = cv2.imread(str(path))
            h, w = image.shape[:2]
            box = _xyxy(norm, w, h)
            if box[3] - box[1] < 150 or box[2] - box[0] < 50:
                continue  # small objects scale up badly
            if box[0] < 3 or box[1] < 3 or box[2] > w - 3 or box[3] > h - 3:
                continue  # cut by the image edge
            if any(
                _overlap(box, _xyxy(o, w, h)) > 0.02 for j, (_, o) in enumerate(objects) if j != k
            ):
                continue  # another object inside the crop
            x1, y1, x2, y2 = box.astype(int)
            found.append((float((x2 - x1) * (y2 - y1)), label, image[y1:y2, x1:x2].copy()))
    found.sort(key=lambda f: -f[0])
    out = []
    for label, n in want.items():
        for _, _, crop in [f for f in found if f[1] == label][:n]:
            scale = height / crop.shape[0]
            size = (max(8, round(crop.shape[1] * scale)), height)
            out.append((label, cv2.resize(crop, size, interpolation=cv2.INTER_AREA)))
    return out


def actors(items: list[tuple[str, np.ndarray]]) -> list[Actor]:
    """Paths chosen to be counted: most cross the middle line, one each way twice, one never,
    two pass each other (an occlusion), and they come and go at different times."""
    plans = [  # (first frame, waypoints as (frame, x of the box centre / W, y of its bottom / H))
        (0, ((0, 0.12, 0.95), (80, 0.88, 0.9))),  # left to right, low
        (10, ((10, 0.85, 0.55), (100, 0.15, 0.6))),  # right to left, high: passes actor 0
        (
            40,
            ((40, 0.2, 0.75), (90, 0.7, 0.75), (105, 0.7, 0.75), (170, 0.2, 0.78)),
        ),  # there and back
        (60, ((60, 0.25, 0.5), (200, 0.3, 0.95))),  # stays on the left: never crosses
        (120, ((120, 0.9, 0.98), (220, 0.1, 0.9))),  # right to left
        (150, ((150, 0.1, 0.6), (235, 0.8, 0.65))),  # left to right, late
    ]
    out = []
    pairs = zip(items, plans, strict=False)  # as many actors as crops found (at most 6)
    for gt_id, ((label, crop), (first, points)) in enumerate(pairs, start=1):
        h, w = crop.shape[:2]
        waypoints = tuple(
            (f, float(np.clip(cx * W - w / 2, 0, W - w)), float(np.clip(by * H - h, 0, H - h)))
            for f, cx, by in points
        )
        out.append(Actor(gt_id, label, crop, first, waypoints))
    return out


def render(back: np.ndarray, cast: list[Actor], path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for f in range(frames):
            image = back.copy()
            for actor in cast:  # later actors in front: actor order is the depth order
                box = actor.box(f)
                if box is None:
                    continue
                x, y = round(box[0]), round(box[1])
                h, w = actor.crop.shape[:2]
                image[y : y + h, x : x + w] = actor.crop
            writer.write(image)
    finally:
        writer.release()


def ground_truth(cast: list[Actor], frames: int) -> dict[int, list[tuple[int, tuple]]]:
    """frame -> [(gt_id, box as drawn)]."""
    out: dict[int, list[tuple[int, tuple]]] = {}
    for f in range(frames):
        out[f] = []
        for a in cast:
            box = a.box(f)
            if box is not None:
                x, y = round(box[0]), round(box[1])
                h, w = a.crop.shape[:2]
                out[f].append((a.gt_id, (x, y, x + w, y + h)))
    return out


def true_crossings(cast: list[Actor], frames: int) -> list[tuple[int, str]]:
    """(gt_id, direction) of every crossing of :data:`LINE` by a box's bottom centre."""
    a = (LINE[0][0] * W, LINE[0][1] * H)
    b = (LINE[1][0] * W, LINE[1][1] * H)
    out = []
    for actor in cast:
        prev, last_side = None, 0  # a point exactly on the line keeps the side it came from
        for f in range(actor.first, min(actor.last, frames - 1) + 1):
            box = actor.box(f)
            assert box is not None
            p = ((box[0] + box[2]) / 2, box[3])
            side = int(side_of_line(np.array([p]), a, b)[0])
            if side and last_side and side != last_side and segments_intersect(prev, p, a, b):
                out.append((actor.gt_id, "left_to_right" if side > 0 else "right_to_left"))
            last_side = side or last_side
            prev = p
    return out
