"""Class names: from model metadata (Ultralytics ``names``), a data.yaml, or COCO-80."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

COCO80: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


def _names_from_mapping(names: object) -> tuple[str, ...] | None:
    if isinstance(names, dict):
        return tuple(str(names[k]) for k in sorted(names, key=int))
    if isinstance(names, list | tuple):
        return tuple(str(n) for n in names)
    return None


def labels_from_metadata(metadata: dict[str, str]) -> tuple[str, ...] | None:
    """Parse Ultralytics' ``names`` metadata (a Python dict literal) if present."""
    raw = metadata.get("names")
    if not raw:
        return None
    try:
        return _names_from_mapping(ast.literal_eval(raw))
    except (ValueError, SyntaxError):
        return None


def labels_from_data_yaml(path: str | Path) -> tuple[str, ...]:
    """Class names from a YOLO ``data.yaml`` (list or index→name mapping)."""
    data = yaml.safe_load(Path(path).read_text())
    names = _names_from_mapping(data.get("names") if isinstance(data, dict) else None)
    if names is None:
        raise ValueError(f"{path}: no 'names' list or mapping")
    return names


def labels_from_text(path: str | Path) -> tuple[str, ...]:
    """One class name per line."""
    return tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())


def load_labels(source: str | Path) -> tuple[str, ...]:
    """Labels from a file: ``.yaml``/``.yml`` as data.yaml, anything else one name per line."""
    p = Path(source)
    if p.suffix in (".yaml", ".yml"):
        return labels_from_data_yaml(p)
    return labels_from_text(p)
