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


# Ultralytics' COCO-80 ``names`` is 1.1 KB and LVIS' 1203 classes about 25 KB; a model's
# metadata is untrusted input, and ast.literal_eval's cost grows with it (78 KB: 0.2 s, 8 MB).
MAX_NAMES_CHARS = 64 * 1024
MAX_NAME_CHARS = 256


class BadNames(ValueError):
    """Class names that are no list of names: the message says what is wrong."""


def _name(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadNames(f"a class name must be text, not {type(value).__name__}")
    name = str(value)
    if len(name) > MAX_NAME_CHARS:
        raise BadNames(f"a class name of {len(name)} characters (at most {MAX_NAME_CHARS})")
    return name


def _index(key: object) -> int:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.isdecimal() and len(key) <= 9:
        return int(key)
    raise BadNames(f"class index {str(key)[:40]!r} is not a number")


def _names_from_mapping(names: object) -> tuple[str, ...]:
    """A list of names, or an index → name mapping whose indices are exactly 0..N-1."""
    if isinstance(names, dict):
        by_index = {_index(k): v for k, v in names.items()}
        if sorted(by_index) != list(range(len(by_index))):
            raise BadNames(f"class indices must run 0..{len(by_index) - 1} without gaps")
        return tuple(_name(by_index[i]) for i in range(len(by_index)))
    if isinstance(names, list | tuple):
        return tuple(_name(n) for n in names)
    raise BadNames(f"expected a list or an index→name mapping, not {type(names).__name__}")


def parse_names(raw: str) -> tuple[str, ...]:
    """Class names from Ultralytics' ``names`` text (a Python literal); :class:`BadNames` for
    anything else, however large or odd (the text comes from a model file)."""
    if len(raw) > MAX_NAMES_CHARS:
        raise BadNames(f"{len(raw)} characters, more than {MAX_NAMES_CHARS}")
    try:
        value = ast.literal_eval(raw)
    # MemoryError: the parser's own stack overflow ('-' * 60000 + '1'), not a full heap.
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise BadNames(f"not a Python literal ({type(exc).__name__})") from None
    return _names_from_mapping(value)


def labels_from_metadata(metadata: dict[str, str]) -> tuple[str, ...] | None:
    """Class names from Ultralytics' ``names`` metadata; ``None`` when there is none.

    Raises :class:`BadNames` (naming the key) when it is there but unusable.
    """
    raw = metadata.get("names")
    if not raw:
        return None
    try:
        return parse_names(raw)
    except BadNames as exc:
        raise BadNames(f"model metadata 'names': {exc}") from None


def labels_from_data_yaml(path: str | Path) -> tuple[str, ...]:
    """Class names from a YOLO ``data.yaml`` (list or index→name mapping)."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or data.get("names") is None:
        raise ValueError(f"{path}: no 'names' list or mapping")
    try:
        return _names_from_mapping(data["names"])
    except BadNames as exc:
        raise BadNames(f"{path}: 'names': {exc}") from None


def labels_from_text(path: str | Path) -> tuple[str, ...]:
    """One class name per line."""
    return tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())


def load_labels(source: str | Path) -> tuple[str, ...]:
    """Labels from a file: ``.yaml``/``.yml`` as data.yaml, anything else one name per line."""
    p = Path(source)
    if p.suffix in (".yaml", ".yml"):
        return labels_from_data_yaml(p)
    return labels_from_text(p)
