"""edged's mAP50-95 as NNCF's accuracy-control validation function.

NNCF hands over each candidate model already compiled; everything around its inference is
``edged eval``'s: the daemon's letterbox and decode/NMS (a :class:`ModelRunner` of the FP32
source gives both), :func:`predict_dataset`, and pycocotools through :func:`coco_metrics`. The
metric is a fraction (0.340), as ``edged eval`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edged.postprocess.decoders import Detections
from edged.preprocess import Letterbox
from edged.tools.coco import coco_metrics
from edged.tools.dataset import YoloDataset
from edged.tools.evaluate import predict_dataset
from edged.tools.runner import ModelRunner


class CompiledModelRunner:
    """A model NNCF compiled, between ``runner``'s letterbox and decode."""

    def __init__(self, runner: ModelRunner, compiled: Any) -> None:
        self._runner = runner
        self._compiled = compiled

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        return self._runner.preprocess(image_bgr)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        results = self._compiled({0: tensor})
        # Copies: the compiled model's own request owns (and reuses) the result buffers.
        return [np.array(results[o]) for o in self._compiled.outputs]

    def postprocess(self, outputs: list[np.ndarray], box: Letterbox) -> Detections:
        return self._runner.postprocess(outputs, box)


class MapValidation:
    """``validation_fn(compiled_model, images) -> (mAP50-95, per-image mAP50-95)``.

    The per-image values let NNCF pick the images where quantization hurts most without
    running each image through the model a second time.
    """

    def __init__(
        self,
        runner: ModelRunner,
        dataset: YoloDataset,
        images: Sequence[Path],
        max_detections: int,
        progress: bool = False,
    ) -> None:
        self.runner = runner
        self.dataset = dataset
        self.images = list(images)  # what NNCF iterates (one Path per item)
        self.max_detections = max_detections
        self.progress = progress

    def __call__(self, compiled: Any, items: Iterable[Path]) -> tuple[float, list[float]]:
        paths = list(items)
        # A bar only for passes over the whole set; NNCF ranks layers on many small subsets.
        bar = (
            (lambda xs: tqdm(xs, desc="validate mAP50-95", unit="img", leave=False))
            if self.progress and len(paths) == len(self.images)
            else None
        )
        model = CompiledModelRunner(self.runner, compiled)
        per_image, _ = predict_dataset(model, self.dataset, paths, bar)  # type: ignore[arg-type]
        classes = len(self.dataset.names)
        metric = coco_metrics(per_image, classes, self.max_detections).map50_95
        each = [coco_metrics([d], classes, self.max_detections).map50_95 for d in per_image]
        return metric, each
