import numpy as np
import pytest

from edged.preprocess import (
    PAD_VALUE,
    letterbox,
    letterbox_geometry,
    to_nchw_float,
    to_nhwc_uint8,
    unletterbox_boxes,
)


@pytest.mark.parametrize(
    ("src", "dst", "scale", "pad"),
    [
        ((768, 432), (640, 640), 640 / 768, (0, 140)),
        ((432, 768), (640, 640), 640 / 768, (140, 0)),
        ((640, 640), (640, 640), 1.0, (0, 0)),
        ((1920, 1080), (320, 320), 320 / 1920, (0, 70)),
    ],
)
def test_geometry_keeps_aspect_and_centres(src, dst, scale, pad):
    box, new_w, new_h = letterbox_geometry(*src, *dst)
    assert box.scale == pytest.approx(scale)
    assert (box.pad_x, box.pad_y) == pad
    assert new_w <= dst[0] and new_h <= dst[1]
    assert new_w == dst[0] or new_h == dst[1]


def test_letterbox_pads_with_grey_and_places_image():
    image = np.full((432, 768, 3), 200, np.uint8)
    out, box = letterbox(image, 640, 640)
    assert out.shape == (640, 640, 3)
    assert (out[: box.pad_y] == PAD_VALUE).all()
    assert (out[640 - box.pad_y :] == PAD_VALUE).all()
    assert (out[box.pad_y : 640 - box.pad_y] == 200).all()


def test_letterbox_writes_into_given_buffer():
    image = np.zeros((100, 50, 3), np.uint8)
    buf = np.empty((64, 64, 3), np.uint8)
    out, _ = letterbox(image, 64, 64, out=buf)
    assert out is buf


def test_letterbox_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="H×W×3"):
        letterbox(np.zeros((10, 10), np.uint8), 64, 64)


def test_inverse_maps_boxes_back_to_source_pixels():
    rng = np.random.default_rng(0)
    src_w, src_h = 768, 432
    _, box = letterbox(np.zeros((src_h, src_w, 3), np.uint8), 640, 640)
    xy1 = rng.uniform(0, 300, (50, 2))
    wh = rng.uniform(5, 300, (50, 2))
    source_boxes = np.hstack([xy1, np.minimum(xy1 + wh, [src_w, src_h])]).astype(np.float32)
    model_boxes = source_boxes * box.scale + [box.pad_x, box.pad_y, box.pad_x, box.pad_y]
    back = unletterbox_boxes(model_boxes.astype(np.float32), box)
    np.testing.assert_allclose(back, source_boxes, atol=1e-3)


def test_inverse_clips_to_the_source():
    _, box = letterbox(np.zeros((432, 768, 3), np.uint8), 640, 640)
    boxes = np.array([[-20, 0, 700, 650]], np.float32)
    back = unletterbox_boxes(boxes, box)
    assert back[0, 0] == 0 and back[0, 1] == 0
    assert back[0, 2] == 768 and back[0, 3] == 432


def test_tensor_layouts():
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    nchw = to_nchw_float(bgr)
    assert nchw.shape == (1, 3, 4, 6) and nchw.dtype == np.float32
    assert (nchw[0, 2] == 1.0).all() and (nchw[0, 0] == 0).all()  # RGB order: blue last
    nhwc = to_nhwc_uint8(bgr)
    assert nhwc.shape == (1, 4, 6, 3) and (nhwc[0, ..., 2] == 255).all()
