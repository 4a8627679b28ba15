"""HailoRT NMS-by-class parsing and the letterbox inversion of its normalised boxes (pure)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edged.backends.hailo_nms import (
    BBOX_PARAMS,
    DENSE_COLUMNS,
    nms_to_dense,
    per_class_to_dense,
    raw_by_class_to_dense,
)
from edged.postprocess.decoders import DecodeParams, OutputLayout, decode, detect_layout
from edged.preprocess import letterbox_geometry

DENSE = np.array(
    [
        [0, 0.25, 0.125, 0.75, 0.375, 0.91],
        [0, 0.05, 0.05, 0.15, 0.10, 0.40],
        [2, 0.5, 0.5, 0.625, 0.75, 0.62],
        [79, 0.0, 0.0, 1.0, 1.0, 0.30],
    ],
    np.float32,
)


# Encoders for the test data: edged only ever decodes HailoRT's buffers.


def raw_nms_size(num_classes: int, max_bboxes_per_class: int) -> int:
    """Float32 elements of one frame's raw by-class NMS buffer (HailoRT's NMS host shape)."""
    return num_classes * (max_bboxes_per_class * BBOX_PARAMS + 1)


def dense_to_per_class(dense: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """The inverse of :func:`per_class_to_dense`."""
    dense = np.asarray(dense, dtype=np.float32).reshape(-1, DENSE_COLUMNS)
    out = []
    for class_id in range(num_classes):
        rows = dense[dense[:, 0].astype(np.int64) == class_id]
        out.append(np.ascontiguousarray(rows[:, 1:]))
    return out


def dense_to_raw_by_class(
    dense: np.ndarray, num_classes: int, max_bboxes_per_class: int
) -> np.ndarray:
    """Encode ``K×6`` rows as a raw by-class NMS buffer (zero padded to the full host size)."""
    raw = np.zeros(raw_nms_size(num_classes, max_bboxes_per_class), np.float32)
    offset = 0
    for boxes in dense_to_per_class(dense, num_classes):
        boxes = boxes[:max_bboxes_per_class]
        raw[offset] = boxes.shape[0]
        offset += 1
        raw[offset : offset + boxes.size] = boxes.reshape(-1)
        offset += boxes.size
    return raw


def _per_class(num_classes: int = 80) -> list[np.ndarray]:
    return dense_to_per_class(DENSE, num_classes)


def test_per_class_lists_become_dense_rows_with_the_class_index() -> None:
    per_class = _per_class()
    assert [len(a) for a in per_class if len(a)] == [2, 1, 1]
    dense = per_class_to_dense(per_class)
    assert dense.dtype == np.float32 and dense.shape == (4, 6)
    np.testing.assert_array_equal(dense, DENSE)


def test_empty_classes_as_hailort_returns_them() -> None:
    # pyhailort builds empty classes with numpy.empty([0, 5]) (float64)
    per_class = [np.empty([0, 5]) for _ in range(80)]
    assert per_class_to_dense(per_class).shape == (0, 6)
    assert nms_to_dense(per_class).shape == (0, 6)


def test_raw_by_class_buffer_round_trip_and_padding() -> None:
    raw = dense_to_raw_by_class(DENSE, 80, 100)
    assert raw.shape == (raw_nms_size(80, 100),) == (80 * 501,)
    np.testing.assert_array_equal(raw_by_class_to_dense(raw, 80), DENSE)


def test_truncated_raw_buffer_is_rejected() -> None:
    raw = dense_to_raw_by_class(DENSE, 80, 100)
    with pytest.raises(ValueError, match="claims"):
        raw_by_class_to_dense(raw[:5], 80)
    with pytest.raises(ValueError, match="ends before class"):
        raw_by_class_to_dense(np.zeros(3, np.float32), 80)


def test_all_forms_pyhailort_returns_are_accepted() -> None:
    per_class = _per_class()
    # 4.19+: per-class list
    np.testing.assert_array_equal(nms_to_dense(per_class), DENSE)
    # 4.18: the same wrapped in a one-frame batch
    np.testing.assert_array_equal(nms_to_dense([per_class]), DENSE)
    # raw buffer (get_buffer(None)) with the class count from the HEF
    np.testing.assert_array_equal(nms_to_dense(dense_to_raw_by_class(DENSE, 80, 10), 80), DENSE)
    # HAILO_NMS_BY_SCORE detection objects (box as attributes, or a nested box object)
    objects = [
        SimpleNamespace(
            class_id=int(r[0]), score=r[5], y_min=r[1], x_min=r[2], y_max=r[3], x_max=r[4]
        )
        for r in DENSE
    ]
    np.testing.assert_allclose(nms_to_dense(objects), DENSE)
    nested = [
        SimpleNamespace(
            class_id=int(r[0]),
            score=r[5],
            box=SimpleNamespace(y_min=r[1], x_min=r[2], y_max=r[3], x_max=r[4]),
        )
        for r in DENSE
    ]
    np.testing.assert_allclose(nms_to_dense(nested), DENSE)
    assert nms_to_dense([]).shape == (0, 6)


def test_raw_buffer_needs_the_class_count() -> None:
    with pytest.raises(ValueError, match="number of classes"):
        nms_to_dense(np.zeros(501, np.float32))


def test_dense_output_shape_selects_the_hailo_nms_decoder() -> None:
    assert detect_layout([(-1, 6)], 80) is OutputLayout.HAILO_NMS
    assert detect_layout([(-1, 6)], None) is OutputLayout.HAILO_NMS


def _to_normalised_input(box_xyxy: np.ndarray, src_w: int, src_h: int, size: int) -> list[float]:
    """Forward letterbox of a source-pixel box → HailoRT's normalised y_min, x_min, y_max, x_max."""
    lb, _, _ = letterbox_geometry(src_w, src_h, size, size)
    x1, y1, x2, y2 = box_xyxy * lb.scale + np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y])
    return [y1 / size, x1 / size, y2 / size, x2 / size]


@pytest.mark.parametrize(("src_w", "src_h"), [(1280, 720), (640, 640), (480, 640), (1920, 1080)])
def test_letterbox_is_undone_on_the_host(src_w: int, src_h: int) -> None:
    boxes = np.array(
        [[100, 50, 300, 400], [src_w * 0.5, src_h * 0.25, src_w * 0.9, src_h * 0.6]], np.float32
    )
    rows = [
        [0, *_to_normalised_input(boxes[0], src_w, src_h, 640), 0.9],
        [2, *_to_normalised_input(boxes[1], src_w, src_h, 640), 0.7],
        [5, 0.1, 0.1, 0.2, 0.2, 0.05],  # below threshold
    ]
    per_class = dense_to_per_class(np.array(rows, np.float32), 80)
    lb, _, _ = letterbox_geometry(src_w, src_h, 640, 640)
    dets = decode(
        [nms_to_dense(per_class)],
        OutputLayout.HAILO_NMS,
        DecodeParams(conf_threshold=0.25),
        (640, 640),
        lb,
    )
    assert len(dets) == 2
    order = np.argsort(dets.class_ids)
    np.testing.assert_array_equal(dets.class_ids[order], [0, 2])
    np.testing.assert_allclose(dets.boxes[order], boxes, atol=0.5)
    np.testing.assert_allclose(dets.scores[order], [0.9, 0.7], rtol=1e-6)


def test_boxes_reaching_into_the_padding_are_clipped_to_the_source() -> None:
    lb, _, _ = letterbox_geometry(1280, 720, 640, 640)  # scale 0.5, pad_y 140
    per_class = dense_to_per_class(np.array([[0, 0.0, 0.0, 1.0, 1.0, 0.9]], np.float32), 80)
    dets = decode([nms_to_dense(per_class)], OutputLayout.HAILO_NMS, DecodeParams(), (640, 640), lb)
    np.testing.assert_allclose(dets.boxes, [[0, 0, 1280, 720]])
