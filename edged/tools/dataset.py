"""YOLO-format datasets: ``data.yaml`` (or a folder), image files and ``class cx cy w h`` labels."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from edged.labels import COCO80
from edged.tools.errors import ToolError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class GroundTruth:
    """Labelled boxes of one image in source pixels: ``boxes`` xyxy (N×4), ``class_ids`` (N)."""

    boxes: np.ndarray
    class_ids: np.ndarray


@dataclass(frozen=True)
class YoloDataset:
    """One split of a YOLO dataset."""

    root: Path
    images: tuple[Path, ...]
    names: tuple[str, ...]

    def ground_truth(self, image: Path, width: int, height: int) -> GroundTruth:
        return read_yolo_labels(label_path_for(image), width, height)


def list_images(directory: str | Path) -> list[Path]:
    """Image files directly in (or below) ``directory``, sorted by path."""
    root = Path(directory)
    if not root.is_dir():
        raise ToolError(f"{root}: not a directory of images")
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ToolError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def sample_images(images: Sequence[Path], count: int | None, seed: int = 0) -> list[Path]:
    """A reproducible subset of ``count`` images (all when ``count`` is None or too large)."""
    if count is None or count >= len(images):
        return list(images)
    if count < 1:
        raise ToolError(f"need at least one image, asked for {count}")
    chosen = random.Random(seed).sample(range(len(images)), count)
    return [images[i] for i in sorted(chosen)]


def label_path_for(image: Path) -> Path:
    """Ultralytics' convention: the last ``images`` folder becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def read_yolo_labels(path: Path, width: int, height: int) -> GroundTruth:
    """Normalised ``class cx cy w h`` rows → pixel xyxy; a missing file means no objects."""
    rows = np.zeros((0, 5), np.float32)
    if path.is_file():
        text = path.read_text().strip()
        if text:
            # Segment labels (class x1 y1 x2 y2 ...) are not boxes; only the first 5 columns of
            # box rows are used.
            parsed = [list(map(float, line.split()))[:5] for line in text.splitlines() if line]
            rows = np.asarray([r for r in parsed if len(r) == 5], np.float32).reshape(-1, 5)
    boxes = np.empty((rows.shape[0], 4), np.float32)
    boxes[:, 0] = (rows[:, 1] - rows[:, 3] / 2) * width
    boxes[:, 1] = (rows[:, 2] - rows[:, 4] / 2) * height
    boxes[:, 2] = (rows[:, 1] + rows[:, 3] / 2) * width
    boxes[:, 3] = (rows[:, 2] + rows[:, 4] / 2) * height
    return GroundTruth(boxes, rows[:, 0].astype(np.int64))


def _resolve_split(root: Path, entry: object) -> Path:
    if isinstance(entry, list):
        entry = entry[0] if entry else None
    if not isinstance(entry, str):
        raise ToolError(f"{root}: data.yaml has no usable image folder for this split")
    path = Path(entry)
    return path if path.is_absolute() else root / path


def load_dataset(data: str | Path, split: str = "val") -> YoloDataset:
    """A dataset from a ``data.yaml``, a folder holding one, or a bare folder of images.

    ``path`` in the YAML is taken relative to the YAML's folder (Ultralytics resolves it against
    its datasets dir; relative-to-file is what a checked-out dataset needs).
    """
    source = Path(data)
    if source.is_dir() and (source / "data.yaml").is_file():
        source = source / "data.yaml"
    if source.is_dir():
        return YoloDataset(source, tuple(list_images(source)), COCO80)
    if not source.is_file():
        raise ToolError(f"{source}: no such dataset (give a data.yaml or a folder of images)")
    try:
        config = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise ToolError(f"{source}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(config, dict):
        raise ToolError(f"{source}: not a YOLO data.yaml mapping")
    root = Path(config.get("path") or ".")
    if not root.is_absolute():
        root = (source.parent / root).resolve()
    if split not in config:
        raise ToolError(f"{source}: no {split!r} split")
    images_dir = _resolve_split(root, config[split])
    names = config.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    if not isinstance(names, list):
        raise ToolError(f"{source}: no 'names' list or mapping")
    return YoloDataset(root, tuple(list_images(images_dir)), tuple(str(n) for n in names))


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 image (what capture hands the daemon)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ToolError(f"{path}: cannot decode image")
    return image
