"""Both YOLO layouts on hand-built tensors, and layout detection."""

import numpy as np
import pytest

from edged.postprocess.decoders import (
    DecodeParams,
    OutputLayout,
    UnsupportedLayoutError,
    decode,
    detect_layout,
)
from edged.preprocess import letterbox_geometry

NC = 80
# A 768×432 source letterboxed into 640×640: scale 5/6, pad_y 140.
BOX, _, _ = letterbox_geometry(768, 432, 640, 640)
# Objects in model-input pixels (cx, cy, w, h), class, score.
OBJECTS = [
    ((320, 320, 100, 50), 0, 0.9),
    ((100, 200, 40, 80), 2, 0.7),
    ((500, 400, 60, 60), 16, 0.4),
]


def expected_source_boxes():
    out = []
    for (cx, cy, w, h), cls, score in OBJECTS:
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        s = BOX.scale
        out.append(((x1 / s, (y1 - BOX.pad_y) / s, x2 / s, (y2 - BOX.pad_y) / s), cls, score))
    return out


def yolov8_tensor(n=8400):
    t = np.zeros((1, 4 + NC, n), np.float32)
    t[0, :4] = 1.0
    for i, ((cx, cy, w, h), cls, score) in enumerate(OBJECTS):
        t[0, :4, i * 10] = (cx, cy, w, h)
        t[0, 4 + cls, i * 10] = score
        # A duplicate with a lower score, overlapping heavily: NMS must remove it.
        t[0, :4, i * 10 + 1] = (cx + 2, cy + 1, w, h)
        t[0, 4 + cls, i * 10 + 1] = score * 0.9
    return t


def yolov5_tensor(n=25200):
    t = np.zeros((1, n, 5 + NC), np.float32)
    for i, ((cx, cy, w, h), cls, score) in enumerate(OBJECTS):
        # objectness 0.95 × class 'score/0.95' = score
        t[0, i * 7, :5] = (cx, cy, w, h, 0.95)
        t[0, i * 7, 5 + cls] = score / 0.95
        t[0, i * 7 + 1, :5] = (cx + 1, cy + 2, w, h, 0.95)
        t[0, i * 7 + 1, 5 + cls] = score / 0.95 * 0.8
    return t


def check(dets, min_conf):
    want = [e for e in expected_source_boxes() if e[2] > min_conf]
    assert len(dets) == len(want)
    order = np.argsort(-dets.scores)
    for idx, (box, cls, score) in zip(order, sorted(want, key=lambda e: -e[2]), strict=True):
        assert dets.class_ids[idx] == cls
        assert dets.scores[idx] == pytest.approx(score, abs=1e-5)
        np.testing.assert_allclose(dets.boxes[idx], np.clip(box, 0, [768, 432, 768, 432]),
                                   atol=1e-3)  # fmt: skip


@pytest.mark.parametrize("conf", [0.25, 0.5])
def test_yolov8_decode(conf):
    dets = decode([yolov8_tensor()], OutputLayout.YOLOV8, DecodeParams(conf_threshold=conf),
                  (640, 640), BOX)  # fmt: skip
    check(dets, conf)


@pytest.mark.parametrize("conf", [0.25, 0.5])
def test_yolov5_decode_multiplies_objectness(conf):
    dets = decode([yolov5_tensor()], OutputLayout.YOLOV5, DecodeParams(conf_threshold=conf),
                  (640, 640), BOX)  # fmt: skip
    check(dets, conf)


def test_class_filter_and_max_detections():
    params = DecodeParams(conf_threshold=0.1, classes=(2, 16))
    dets = decode([yolov8_tensor()], OutputLayout.YOLOV8, params, (640, 640), BOX)
    assert sorted(dets.class_ids.tolist()) == [2, 16]
    params = DecodeParams(conf_threshold=0.1, max_detections=1)
    dets = decode([yolov5_tensor()], OutputLayout.YOLOV5, params, (640, 640), BOX)
    assert dets.class_ids.tolist() == [0]


def test_multi_label_keeps_each_class_above_threshold():
    t = np.zeros((1, 4 + NC, 10), np.float32)
    t[0, :4, 0] = (320, 320, 50, 50)
    t[0, 4 + 3, 0] = 0.6
    t[0, 4 + 5, 0] = 0.5
    single = decode([t], OutputLayout.YOLOV8, DecodeParams(conf_threshold=0.3), (640, 640), BOX)
    multi = decode([t], OutputLayout.YOLOV8, DecodeParams(conf_threshold=0.3, multi_label=True),
                   (640, 640), BOX)  # fmt: skip
    assert single.class_ids.tolist() == [3]
    assert sorted(multi.class_ids.tolist()) == [3, 5]


def test_hailo_nms_rows_are_scaled_and_unletterboxed():
    # class, y1, x1, y2, x2 (normalised to the 640×640 input), score
    rows = np.array([[2, 0.25, 0.5, 0.5, 0.75, 0.8]], np.float32)
    dets = decode([rows], OutputLayout.HAILO_NMS, DecodeParams(), (640, 640), BOX)
    s = BOX.scale
    np.testing.assert_allclose(
        dets.boxes[0], [320 / s, (160 - 140) / s, 480 / s, (320 - 140) / s], atol=1e-3
    )
    assert dets.class_ids.tolist() == [2]


@pytest.mark.parametrize(
    ("shape", "nc", "layout"),
    [
        ((1, 84, 8400), 80, OutputLayout.YOLOV8),
        ((1, 84, 8400), None, OutputLayout.YOLOV8),
        ((1, 25200, 85), 80, OutputLayout.YOLOV5),
        ((1, 25200, 85), None, OutputLayout.YOLOV5),
        ((1, 6, 8400), 2, OutputLayout.YOLOV8),
        ((-1, 6), None, OutputLayout.HAILO_NMS),
    ],
)
def test_detect_layout(shape, nc, layout):
    assert detect_layout([shape], nc) is layout


@pytest.mark.parametrize(
    ("shape", "nc"),
    [((1, 1000), None), ((1, 84, 8400), 20), ((1, 3, 80, 80, 85), 80), ((1, 2, 3), None)],
)
def test_unrecognised_layouts_are_refused(shape, nc):
    with pytest.raises(UnsupportedLayoutError):
        detect_layout([shape], nc)
