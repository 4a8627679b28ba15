"""TensorWriter: the preprocess stage's fused letterbox + normalise is bit-identical to the
reference path (``letterbox``, then ``to_nchw_float`` / ``to_nhwc_uint8``), padding skipped or
not."""

from __future__ import annotations

import numpy as np
import pytest

from edged.preprocess import PAD_VALUE, TensorWriter, letterbox, to_nchw_float, to_nhwc_uint8

SIZES = [(720, 1280), (432, 768), (1280, 720), (640, 640), (300, 500), (1080, 1920), (17, 3)]


def _reference(image: np.ndarray, layout: str, w: int, h: int) -> tuple[np.ndarray, object]:
    canvas, box = letterbox(image, w, h)
    return (to_nchw_float(canvas) if layout == "NCHW" else to_nhwc_uint8(canvas)), box


def _buffer(layout: str, w: int, h: int) -> np.ndarray:
    if layout == "NCHW":
        return np.full((1, 3, h, w), np.nan, np.float32)  # NaN: any byte not written shows
    return np.full((1, h, w, 3), 7, np.uint8)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("size", [(640, 640), (320, 256)])
def test_bit_identical_to_letterbox_then_convert(layout, size):
    rng = np.random.default_rng(1)
    writer = TensorWriter(layout)
    out = _buffer(layout, *size)
    for h, w in SIZES:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref, ref_box = _reference(image, layout, *size)
        for key in (None, 3, 3):  # unkeyed, first use of slot 3, slot 3 again (padding skipped)
            box = writer.write(image, out, key=key)
            assert box == ref_box
            np.testing.assert_array_equal(out, ref)


def test_padding_is_written_once_per_slot_and_again_when_the_source_size_changes():
    writer = TensorWriter("NCHW")
    out = np.zeros((1, 3, 64, 64), np.float32)
    image = np.full((36, 64, 3), 255, np.uint8)  # 16:9 → picture rows 14..50
    writer.write(image, out, key=0)
    grey = np.float32(PAD_VALUE) * np.float32(1 / 255)
    assert (out[0, :, :14] == grey).all()
    out[0, :, :14] = -1.0  # scribble over the padding: a keyed rewrite must not touch it
    writer.write(image, out, key=0)
    assert (out[0, :, :14] == -1.0).all() and (out[0, :, 14:50] == 1.0).all()
    writer.write(np.full((64, 36, 3), 255, np.uint8), out, key=0)  # portrait now: re-padded
    assert (out[0, :, :, :14] == grey).all() and (out[0, :, :14, 14:50] == 1.0).all()
    writer.forget(0)
    out[...] = -1.0
    writer.write(np.full((64, 36, 3), 255, np.uint8), out, key=0)
    assert (out[0, :, :, :14] == grey).all()


def test_channel_order_and_rejects_bad_images():
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    out = np.empty((1, 3, 6, 6), np.float32)
    TensorWriter("NCHW").write(bgr, out)
    assert (out[0, 2, 1:5] == 1.0).all() and (out[0, 0, 1:5] == 0).all()  # RGB: blue last
    TensorWriter("NCHW", swap_rb=False).write(bgr, out)
    assert (out[0, 0, 1:5] == 1.0).all()
    with pytest.raises(ValueError, match="H×W×3"):
        TensorWriter().write(np.zeros((4, 4), np.uint8), out)
    with pytest.raises(ValueError, match="layout"):
        TensorWriter("NC")
