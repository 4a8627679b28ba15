"""``edged eval``: accuracy of one or more models on a YOLO dataset, the way the daemon runs them.

Conventional validation settings (YOLOv5 ``val.py``): confidence 0.001, class-aware NMS at IoU
0.6 with several labels per box (``multi_label``), at most 300 detections per image. mAP comes
from pycocotools (see :mod:`edged.tools.coco`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edged.postprocess.decoders import DecodeParams
from edged.tools.backend_choice import backend_name, options_for, split_backend
from edged.tools.coco import DetectionMetrics, ImageDetections, coco_metrics
from edged.tools.dataset import YoloDataset, label_path_for, load_dataset, read_image
from edged.tools.errors import ToolError
from edged.tools.provenance import environment, model_identity
from edged.tools.runner import ModelRunner

RESULT_KIND = "edged.eval"
RESULT_VERSION = 1
# Confidence histogram: 100 bins of 0.01, enough for a CDF at any cut-off the report picks.
CONFIDENCE_BINS = np.linspace(0.0, 1.0, 101)
COUNT_THRESHOLDS = (0.1, 0.25, 0.5, 0.75)


@dataclass(frozen=True)
class EvalSettings:
    conf_threshold: float = 0.001
    iou_threshold: float = 0.6
    max_detections: int = 300
    multi_label: bool = True
    intra_op_threads: int | None = None
    max_images: int | None = None
    backend: str | None = None  # default: by the model file's suffix
    backend_options: tuple[tuple[str, Any], ...] = ()

    def decode_params(self) -> DecodeParams:
        return DecodeParams(
            conf_threshold=self.conf_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
            multi_label=self.multi_label,
        )


@dataclass(frozen=True)
class ConfidenceSummary:
    """Distribution of the scores of all kept detections."""

    bin_edges: list[float]
    counts: list[int]
    # Mean number of detections per image at or above each threshold.
    per_image_at_least: dict[str, float]

    def cdf(self, minimum: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(x, F(x)) over detections scoring ≥ ``minimum`` (bin resolution)."""
        edges = np.asarray(self.bin_edges)
        counts = np.asarray(self.counts, dtype=np.float64)
        counts[edges[:-1] < minimum - 1e-9] = 0
        total = counts.sum()
        cumulative = np.cumsum(counts) / total if total else np.zeros_like(counts)
        return edges[1:], cumulative


@dataclass(frozen=True)
class EvalResult:
    identity: dict[str, str]
    dataset: dict[str, Any]
    settings: EvalSettings
    metrics: DetectionMetrics
    confidence: ConfidenceSummary
    mean_inference_ms: float
    duration_s: float
    environment: dict[str, str] = field(default_factory=environment)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"]["per_class_ap50_95"] = {
            str(k): v for k, v in self.metrics.per_class_ap50_95.items()
        }
        return {"kind": RESULT_KIND, "version": RESULT_VERSION, **d}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> EvalResult:
        metrics = dict(d["metrics"])
        metrics["per_class_ap50_95"] = {
            int(k): v for k, v in metrics.get("per_class_ap50_95", {}).items()
        }
        return EvalResult(
            identity=d["identity"],
            dataset=d["dataset"],
            settings=EvalSettings(**d["settings"]),
            metrics=DetectionMetrics(**metrics),
            confidence=ConfidenceSummary(**d["confidence"]),
            mean_inference_ms=d["mean_inference_ms"],
            duration_s=d["duration_s"],
            environment=d.get("environment", {}),
        )

    def summary_row(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "model": self.identity["name"],
            "precision_format": self.identity["precision"],
            "images": m.num_images,
            "labels": m.num_labels,
            "P": round(m.precision, 4),
            "R": round(m.recall, 4),
            "mAP50": round(m.map50, 4),
            "mAP50-95": round(m.map50_95, 4),
            "dets/img>=0.25": self.confidence.per_image_at_least.get("0.25", 0.0),
            "infer_ms": round(self.mean_inference_ms, 2),
            "sha256": self.identity["sha256"][:12],
        }


def summarize_confidence(scores: np.ndarray, num_images: int) -> ConfidenceSummary:
    counts, _ = np.histogram(np.clip(scores, 0.0, 1.0), bins=CONFIDENCE_BINS)
    at_least = {
        str(t): round(float((scores >= t).sum()) / max(num_images, 1), 3) for t in COUNT_THRESHOLDS
    }
    return ConfidenceSummary(
        [round(float(e), 4) for e in CONFIDENCE_BINS], [int(c) for c in counts], at_least
    )


def require_labels(images: Sequence[Path], root: Path) -> None:
    """Refuse a dataset without a single label file: its mAP would be a meaningless 0."""
    if not images:
        raise ToolError(f"{root}: no images to evaluate")
    if not any(label_path_for(image).is_file() for image in images):
        example = label_path_for(images[0])
        raise ToolError(f"{root}: none of the {len(images)} images has a label file "
                        f"(looked for e.g. {example}); mAP needs YOLO labels")  # fmt: skip


def predict_dataset(
    runner: ModelRunner,
    dataset: YoloDataset,
    images: Sequence[Path],
    progress: Callable[[Sequence[Path]], Any] | None = None,
) -> tuple[list[ImageDetections], float]:
    """Detections and ground truth for each image, plus the mean inference time in ms."""
    results: list[ImageDetections] = []
    infer_seconds = 0.0
    for path in progress(images) if progress else images:
        image = read_image(path)
        height, width = image.shape[:2]
        gt = dataset.ground_truth(path, width, height)
        tensor, box = runner.preprocess(image)
        start = time.perf_counter()
        outputs = runner.infer(tensor)
        infer_seconds += time.perf_counter() - start
        det = runner.postprocess(outputs, box)
        results.append(
            ImageDetections(
                width, height, gt.boxes, gt.class_ids, det.boxes, det.scores, det.class_ids
            )
        )
    return results, 1000 * infer_seconds / max(len(images), 1)


def evaluate(
    model_path: str | Path,
    data: str | Path | YoloDataset,
    settings: EvalSettings | None = None,
    *,
    split: str = "val",
    progress: bool = True,
) -> EvalResult:
    """Run ``model_path`` over a YOLO dataset and score it.

    Args:
        model_path: ONNX model (FP32 or made by ``edged quantize``).
        data: ``data.yaml``, a folder holding one, or an already loaded dataset.
        settings: thresholds and thread count; conventional validation settings by default.
        split: which split of the data.yaml to evaluate.
        progress: show a progress bar on stderr.
    """
    settings = settings or EvalSettings()
    dataset = data if isinstance(data, YoloDataset) else load_dataset(data, split)
    images = list(dataset.images[: settings.max_images])
    require_labels(images, dataset.root)
    name = backend_name(model_path, settings.backend)
    options = options_for(name, settings.intra_op_threads, **dict(settings.backend_options))
    start = time.perf_counter()
    runner = ModelRunner(
        model_path, options, settings.decode_params(), len(dataset.names), backend=name
    )
    try:
        bar = (
            (lambda items: tqdm(items, desc=f"eval {Path(model_path).name}", unit="img"))
            if progress
            else None
        )
        per_image, infer_ms = predict_dataset(runner, dataset, images, bar)
    finally:
        runner.close()
    ran = {"backend": name, "precision": runner.backend.precision}
    metrics = coco_metrics(per_image, len(dataset.names), settings.max_detections)
    scores = np.concatenate([d.scores for d in per_image]) if per_image else np.zeros(0)
    return EvalResult(
        identity=model_identity(split_backend(model_path)[1], **ran),
        dataset={"root": str(dataset.root), "split": split, "images": len(images)},
        settings=settings,
        metrics=metrics,
        confidence=summarize_confidence(scores, len(images)),
        mean_inference_ms=infer_ms,
        duration_s=round(time.perf_counter() - start, 2),
    )
