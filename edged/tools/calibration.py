"""Calibration images for static quantization, preprocessed exactly like the daemon's frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from tqdm import tqdm

from edged.preprocess import letterbox, to_nchw_float
from edged.tools.dataset import read_image


class LetterboxCalibrationReader(CalibrationDataReader):
    """Feeds letterboxed 1×3×H×W float tensors, one image at a time (never all in memory).

    ``set_range`` lets ONNX Runtime calibrate in chunks (its ``CalibStridedMinMax`` loop), so
    histogram calibrators hold one chunk's activations at a time instead of the whole set's.
    """

    def __init__(
        self,
        images: Sequence[Path],
        input_name: str,
        input_size: tuple[int, int],
        progress: bool = True,
    ) -> None:
        self.images = list(images)
        self.input_name = input_name
        self.input_size = input_size
        self._start, self._end = 0, len(self.images)
        self._next = 0
        self._bar = tqdm(total=len(self.images), desc="calibrate", unit="img", disable=not progress)

    def __len__(self) -> int:
        return len(self.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, min(end_index, len(self.images))
        self._next = self._start

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        image = read_image(self.images[self._next])
        self._next += 1
        canvas, _ = letterbox(image, *self.input_size)
        self._bar.update(1)
        return {self.input_name: to_nchw_float(canvas)}

    def close(self) -> None:
        self._bar.close()


def chunk_size(total: int, wanted: int) -> int:
    """Largest chunk ≤ ``wanted`` dividing ``total`` (ORT requires equal-size chunks)."""
    wanted = max(1, min(wanted, total))
    return next(c for c in range(wanted, 0, -1) if total % c == 0)
