"""edged's decode of real YOLOv5n outputs equals an independent reference decoding."""

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from edged.postprocess.decoders import DecodeParams, OutputLayout, decode
from edged.preprocess import letterbox, to_nchw_float
from tests.paths import VAL_IMAGES, YOLOV5N, require

CONF, IOU = 0.25, 0.45


def reference_decode(output, box, conf=CONF, iou=IOU):
    """YOLOv5's own recipe, written independently: obj × cls, best class, OpenCV NMS."""
    rows = output[0]
    rows = rows[rows[:, 4] > conf]
    cls_scores = rows[:, 5:] * rows[:, 4:5]
    cls = cls_scores.argmax(1)
    score = cls_scores.max(1)
    keep = score > conf
    rows, cls, score = rows[keep], cls[keep], score[keep]
    xywh = [(float(cx - w / 2), float(cy - h / 2), float(w), float(h)) for cx, cy, w, h in
            rows[:, :4]]  # fmt: skip
    idx = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, score.tolist(), cls.tolist(), conf, iou),
                     dtype=int).reshape(-1)  # fmt: skip
    result = []
    for i in idx:
        x, y, w, h = xywh[i]
        x1 = min(max((x - box.pad_x) / box.scale, 0), box.source_width)
        y1 = min(max((y - box.pad_y) / box.scale, 0), box.source_height)
        x2 = min(max((x + w - box.pad_x) / box.scale, 0), box.source_width)
        y2 = min(max((y + h - box.pad_y) / box.scale, 0), box.source_height)
        result.append((int(cls[i]), float(score[i]), (x1, y1, x2, y2)))
    return sorted(result, key=lambda r: -r[1])


@pytest.fixture(scope="module")
def session():
    return ort.InferenceSession(str(require(YOLOV5N)), providers=["CPUExecutionProvider"])


def test_yolov5n_matches_reference_on_coco_val(session):
    images = sorted(require(VAL_IMAGES).glob("*.jpg"))
    assert len(images) >= 100
    total = 0
    for path in images:
        image = cv2.imread(str(path))
        canvas, box = letterbox(image, 640, 640)
        output = session.run(None, {"images": to_nchw_float(canvas)})[0]
        ours = decode(
            [output],
            OutputLayout.YOLOV5,
            DecodeParams(conf_threshold=CONF, iou_threshold=IOU),
            (640, 640),
            box,
        )
        ref = reference_decode(output, box)
        assert len(ours) == len(ref), path.name
        order = np.argsort(-ours.scores, kind="stable")
        for i, (cls, score, xyxy) in zip(order, ref, strict=True):
            assert ours.class_ids[i] == cls, path.name
            assert abs(ours.scores[i] - score) < 1e-4, path.name
            np.testing.assert_allclose(ours.boxes[i], xyxy, atol=1.0, err_msg=path.name)
        total += len(ref)
    assert total > 300  # real detections, not an empty comparison
