"""edged's YOLOv8 decoding equals Ultralytics' own NMS on the raw output of a real YOLOv8n graph.

The model is a YOLOv8n built offline from ``yolov8n.yaml`` (no download). Freshly initialised it
answers every anchor with the same few scores and boxes (ties make any NMS order arbitrary), so
its weights are jittered with a fixed seed before export: still the real YOLOv8 graph and output
layout, now with varied boxes and scores. Scores that saturate to exactly 1.0 are cleared in
the raw tensor both sides get, so the NMS order is well defined. The threshold is low because
the weights are untrained.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from edged.postprocess.decoders import DecodeParams, OutputLayout, decode, detect_layout
from edged.preprocess import Letterbox, letterbox, to_nchw_float
from tests.paths import VAL_IMAGES, require

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def jittered_yolov8n(tmp_path_factory: pytest.TempPathFactory):
    torch = pytest.importorskip("torch")
    ultralytics = pytest.importorskip("ultralytics")
    folder = tmp_path_factory.mktemp("yolov8n")
    torch.manual_seed(0)
    model = ultralytics.YOLO("yolov8n.yaml")
    with torch.no_grad():
        # The class convs keep their prior bias (low scores); everything else is jittered.
        class_convs = {
            id(p)
            for m in model.model.modules()
            if isinstance(m, torch.nn.Conv2d) and m.out_channels == 80
            for p in m.parameters()
        }
        for param in model.model.parameters():
            if id(param) not in class_convs:
                param.add_(torch.randn_like(param) * 0.1)
    weights = folder / "jittered.pt"
    model.save(str(weights))
    return ultralytics.YOLO(str(weights)).export(format="onnx", imgsz=640, verbose=False)


def test_yolov8n_decode_matches_ultralytics_nms(jittered_yolov8n):
    torch = pytest.importorskip("torch")
    nms_module = pytest.importorskip("ultralytics.utils.nms")
    session = ort.InferenceSession(str(jittered_yolov8n), providers=["CPUExecutionProvider"])
    [output_meta] = session.get_outputs()
    assert detect_layout([tuple(output_meta.shape)], 80) is OutputLayout.YOLOV8
    identity = Letterbox(1.0, 0, 0, 640, 640)  # compare in model-input pixels
    images = sorted(require(VAL_IMAGES).glob("*.jpg"))[:12]
    compared = 0
    for path in images:
        canvas, _ = letterbox(cv2.imread(str(path)), 640, 640)
        raw = session.run(None, {session.get_inputs()[0].name: to_nchw_float(canvas)})[0]
        raw[0, 4:][raw[0, 4:] >= 0.999] = 0.0  # saturated ties: order would be arbitrary
        conf = 0.001
        ours = decode([raw], OutputLayout.YOLOV8,
                      DecodeParams(conf_threshold=conf, iou_threshold=0.7, max_detections=300),
                      (640, 640), identity)  # fmt: skip
        [ref] = nms_module.non_max_suppression(
            torch.from_numpy(raw), conf_thres=conf, iou_thres=0.7, max_det=300,
            max_time_img=60.0,
        )  # fmt: skip
        ref = ref.numpy()
        assert len(ours) == len(ref) > 0, path.name
        # Same set of detections; equal scores may come in either order, so sort both by
        # (score, class, x1).
        mine = np.column_stack([ours.boxes, ours.scores, ours.class_ids]).astype(np.float64)
        theirs = ref.astype(np.float64).copy()
        theirs[:, :4] = np.clip(theirs[:, :4], 0, 640)
        for table in (mine, theirs):
            table[:] = table[np.lexsort((table[:, 0], table[:, 5], -np.round(table[:, 4], 5)))]
        np.testing.assert_allclose(mine[:, 4], theirs[:, 4], atol=1e-4, err_msg=path.name)
        np.testing.assert_array_equal(mine[:, 5], theirs[:, 5], err_msg=path.name)
        np.testing.assert_allclose(mine[:, :4], theirs[:, :4], atol=1.0, err_msg=path.name)
        compared += len(ref)
    assert compared > 300
