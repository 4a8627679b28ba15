"""COCO-style detection metrics through pycocotools, plus precision/recall the YOLO way.

pycocotools is the reference implementation of mAP50-95; its defaults are changed in one place
only: up to 300 detections per image are scored (the YOLO validators' ``max_det``) instead of
100. Precision and recall are not COCO metrics; they are taken as YOLO ``val.py`` reports them:
mean over classes at the confidence that maximises the mean F1, at IoU 0.5.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edged.tools.errors import ToolError


@dataclass(frozen=True)
class ImageDetections:
    """Ground truth and predictions of one image, both xyxy in source pixels."""

    width: int
    height: int
    gt_boxes: np.ndarray
    gt_class_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray


@dataclass(frozen=True)
class DetectionMetrics:
    map50: float
    map50_95: float
    precision: float
    recall: float
    f1_confidence: float
    num_images: int
    num_labels: int
    num_detections: int
    # AP50-95 per class id that has labels (classes without labels are not scored).
    per_class_ap50_95: dict[int, float]


def _coco_module():  # pragma: no cover - exercised only when the extra is missing
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ToolError(
            "edged eval needs pycocotools: pip install 'edged[tools]' (or pycocotools)"
        ) from None
    return COCO, COCOeval


def _xywh(boxes: np.ndarray) -> np.ndarray:
    out = boxes.astype(np.float64, copy=True)
    out[:, 2:] -= out[:, :2]
    return out


def _coco_inputs(images: Sequence[ImageDetections], num_classes: int) -> tuple[dict, np.ndarray]:
    gt: dict = {
        "images": [],
        "annotations": [],
        "categories": [{"id": c} for c in range(num_classes)],
    }
    dets = []
    for image_id, img in enumerate(images):
        gt["images"].append({"id": image_id, "width": img.width, "height": img.height})
        for box, cls in zip(_xywh(img.gt_boxes), img.gt_class_ids, strict=True):
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": int(cls),
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
        if len(img.scores):
            rows = np.empty((len(img.scores), 7), np.float64)
            rows[:, 0] = image_id
            rows[:, 1:5] = _xywh(img.boxes)
            rows[:, 5] = img.scores
            rows[:, 6] = img.class_ids
            dets.append(rows)
    return gt, np.concatenate(dets) if dets else np.zeros((0, 7))


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else 0.0


def _smooth(y: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Box filter as in YOLOv5's ``smooth`` (keeps the F1 peak from following noise)."""
    nf = round(len(y) * fraction * 2) // 2 + 1
    p = np.ones(nf // 2)
    yp = np.concatenate((p * y[0], y, p * y[-1]), 0)
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


def _matches_by_class(coco_eval) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
    """Per class: detection scores, matched-at-IoU-0.5 flags and the number of labels."""
    area_all = coco_eval.params.areaRng[0]
    scores: dict[int, list[np.ndarray]] = {}
    matched: dict[int, list[np.ndarray]] = {}
    n_gt: dict[int, int] = {}
    for e in coco_eval.evalImgs:
        if e is None or e["aRng"] != area_all:
            continue
        cls = e["category_id"]
        n_gt[cls] = n_gt.get(cls, 0) + int((~np.asarray(e["gtIgnore"], bool)).sum())
        dt_scores = np.asarray(e["dtScores"])
        if dt_scores.size:
            keep = ~np.asarray(e["dtIgnore"][0], bool)
            scores.setdefault(cls, []).append(dt_scores[keep])
            matched.setdefault(cls, []).append(np.asarray(e["dtMatches"][0])[keep] > 0)
    return {
        cls: (
            np.concatenate(scores.get(cls, [np.zeros(0)])),
            np.concatenate(matched.get(cls, [np.zeros(0, bool)])),
            count,
        )
        for cls, count in n_gt.items()
    }


def _precision_recall(coco_eval) -> tuple[float, float, float]:
    """Mean P and R over classes at the max-mean-F1 confidence, IoU 0.5 (``val.py`` style)."""
    grid = np.linspace(0, 1, 1000)
    p_curves, r_curves = [], []
    for scores, matched, n_gt in _matches_by_class(coco_eval).values():
        if n_gt == 0:
            continue
        if not scores.size:
            p_curves.append(np.zeros_like(grid))
            r_curves.append(np.zeros_like(grid))
            continue
        order = np.argsort(-scores, kind="mergesort")
        tp = np.cumsum(matched[order])
        fp = np.cumsum(~matched[order])
        r_curves.append(np.interp(-grid, -scores[order], tp / n_gt, left=0))
        p_curves.append(np.interp(-grid, -scores[order], tp / np.maximum(tp + fp, 1), left=1))
    if not p_curves:
        return 0.0, 0.0, 0.0
    p, r = np.asarray(p_curves), np.asarray(r_curves)
    f1 = 2 * p * r / (p + r + 1e-16)
    best = int(_smooth(f1.mean(0), 0.1).argmax())
    return float(p[:, best].mean()), float(r[:, best].mean()), float(grid[best])


def coco_metrics(
    images: Sequence[ImageDetections], num_classes: int, max_detections: int = 300
) -> DetectionMetrics:
    """mAP50, mAP50-95 (pycocotools) and P/R (YOLO convention) over a set of images."""
    coco_cls, coco_eval_cls = _coco_module()
    gt_dict, det_rows = _coco_inputs(images, num_classes)
    num_labels = len(gt_dict["annotations"])
    labelled = sorted({a["category_id"] for a in gt_dict["annotations"]})
    empty = DetectionMetrics(0.0, 0.0, 0.0, 0.0, 0.0, len(images), num_labels, 0, {})
    if num_labels == 0 or det_rows.shape[0] == 0:
        return empty
    # pycocotools prints progress on stdout; keep the CLI output (and JSON on stdout) clean.
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_cls()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(det_rows)
        ev = coco_eval_cls(gt, dt, "bbox")
        ev.params.catIds = labelled
        ev.params.maxDets = [1, 10, max_detections]
        ev.evaluate()
        ev.accumulate()
    # precision: [T IoU thresholds, R recall points, K classes, A areas, M maxDets]; -1 marks
    # "no labels". Read directly: COCOeval.summarize() hard-codes 100 dets for its first line.
    prec = ev.eval["precision"][:, :, :, 0, -1]
    per_class = {cls: _mean_valid(prec[:, :, k]) for k, cls in enumerate(labelled)}
    p, r, conf = _precision_recall(ev)
    return DetectionMetrics(
        map50=_mean_valid(prec[0]),
        map50_95=_mean_valid(prec),
        precision=p,
        recall=r,
        f1_confidence=conf,
        num_images=len(images),
        num_labels=num_labels,
        num_detections=int(det_rows.shape[0]),
        per_class_ap50_95=per_class,
    )
