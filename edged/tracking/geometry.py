"""Plane geometry for zones and lines: pure functions on points in source pixels.

Small enough to own (a few lines of numpy each) rather than pull shapely into the daemon.
Image coordinates: x to the right, y down.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]

# Where on a box the point that enters zones and crosses lines sits (fractions of w and h).
ANCHORS: dict[str, tuple[float, float]] = {
    "bottom_center": (0.5, 1.0),
    "center": (0.5, 0.5),
    "top_center": (0.5, 0.0),
    "bottom_left": (0.0, 1.0),
    "bottom_right": (1.0, 1.0),
}


def anchor_points(boxes: np.ndarray, anchor: str) -> np.ndarray:
    """N×2 anchor points of N×4 ``x1, y1, x2, y2`` boxes."""
    fx, fy = ANCHORS[anchor]
    b = boxes.astype(np.float64, copy=False).reshape(-1, 4)
    return np.stack((b[:, 0] + fx * (b[:, 2] - b[:, 0]), b[:, 1] + fy * (b[:, 3] - b[:, 1])), 1)


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether the closed segments p1–p2 and q1–q2 share a point (touching counts)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return (
        (d1 == 0 and _on_segment(p1, q1, q2))
        or (d2 == 0 and _on_segment(p2, q1, q2))
        or (d3 == 0 and _on_segment(q1, p1, p2))
        or (d4 == 0 and _on_segment(q2, p1, p2))
    )


def self_intersection(polygon: Sequence[Point]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges (by index) that touch or cross, else ``None``.

    Edge i runs from vertex i to vertex i+1 (the last one back to vertex 0). O(n²): zones have
    a handful of vertices and are checked once, at config time.
    """
    n = len(polygon)
    edges = [(polygon[i], polygon[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):  # neighbours share a vertex by design
                continue
            if segments_intersect(*edges[i], *edges[j]):
                return i, j
    return None


def polygon_area(polygon: Sequence[Point]) -> float:
    """Unsigned area (shoelace)."""
    p = np.asarray(polygon, np.float64)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


class Polygons:
    """Several polygons tested together: which of N points lies inside which polygon.

    Every polygon's edges are laid out once in flat arrays, so one test is a few numpy
    operations whatever the number of zones (per polygon, it was most of the tracker's time).
    """

    def __init__(self, polygons: Sequence[np.ndarray]) -> None:
        vertices = [np.asarray(p, np.float64).reshape(-1, 2) for p in polygons]
        x1 = np.concatenate([v[:, 0] for v in vertices]) if vertices else np.zeros(0)
        y1 = np.concatenate([v[:, 1] for v in vertices]) if vertices else np.zeros(0)
        x2 = np.concatenate([np.roll(v[:, 0], -1) for v in vertices]) if vertices else x1
        y2 = np.concatenate([np.roll(v[:, 1], -1) for v in vertices]) if vertices else y1
        self._x1, self._y1, self._y2 = x1, y1, y2
        with np.errstate(divide="ignore", invalid="ignore"):
            self._slope = (x2 - x1) / (y2 - y1)  # inf on flat edges, which never straddle
        self._starts = np.cumsum([0] + [len(v) for v in vertices[:-1]])
        self.count = len(vertices)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """N×P booleans, even-odd rule (vectorised ray casting; on an edge: either way)."""
        if self.count == 0 or len(points) == 0:
            return np.zeros((len(points), self.count), bool)
        px, py = points[:, 0:1], points[:, 1:2]
        with np.errstate(invalid="ignore"):
            x_at = self._x1 + (py - self._y1) * self._slope
        hits = ((self._y1 > py) != (self._y2 > py)) & (px < x_at)
        return (np.add.reduceat(hits, self._starts, axis=1) % 2) == 1


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask: which of the N×2 ``points`` lie inside ``polygon`` (M×2)."""
    return Polygons([polygon]).contains(points)[:, 0]


def sides_of_lines(points: np.ndarray, lines: Sequence[tuple[Point, Point]]) -> np.ndarray:
    """N×L: :func:`side_of_line` of every point for every line a→b, in one go."""
    seg = np.asarray(lines, np.float64).reshape(-1, 2, 2)
    a, d = seg[:, 0], seg[:, 1] - seg[:, 0]
    cross = d[:, 0] * (points[:, 1:2] - a[:, 1]) - d[:, 1] * (points[:, 0:1] - a[:, 0])
    return np.sign(cross).astype(np.int8)


def side_of_line(points: np.ndarray, a: Point, b: Point) -> np.ndarray:
    """+1 right of the directed line a→b as seen on the image (y down), -1 left, 0 on it."""
    cross = (b[0] - a[0]) * (points[:, 1] - a[1]) - (b[1] - a[1]) * (points[:, 0] - a[0])
    return np.sign(cross).astype(np.int8)
