"""YOLO dataset loading: data.yaml resolution, label conversion, reproducible sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edged.tools.dataset import label_path_for, list_images, load_dataset, sample_images
from edged.tools.errors import ToolError
from tests.tools.models import tiny_dataset


def test_data_yaml_and_labels_in_pixels(tmp_path: Path) -> None:
    ds = load_dataset(tiny_dataset(tmp_path))
    assert ds.names == ("cat", "dog")
    assert [p.name for p in ds.images] == ["000.jpg", "001.jpg", "002.jpg"]
    gt = ds.ground_truth(ds.images[0], width=200, height=100)
    np.testing.assert_allclose(gt.boxes[0], [50, 40, 150, 60])
    np.testing.assert_array_equal(gt.class_ids, [1, 0])
    # An empty label file and a missing one both mean "no objects".
    assert len(ds.ground_truth(ds.images[1], 200, 100).class_ids) == 0
    assert len(ds.ground_truth(ds.images[2], 200, 100).class_ids) == 0


def test_folder_holding_data_yaml_and_bare_image_folder(tmp_path: Path) -> None:
    root = tiny_dataset(tmp_path).parent
    assert load_dataset(root).names == ("cat", "dog")
    bare = load_dataset(root / "images" / "val")
    assert len(bare.images) == 3 and len(bare.names) == 80  # COCO-80 by default


def test_label_path_convention() -> None:
    assert label_path_for(Path("/d/images/train/a.jpg")) == Path("/d/labels/train/a.txt")
    assert label_path_for(Path("/d/pics/a.png")) == Path("/d/pics/a.txt")


def test_sampling_is_reproducible(tmp_path: Path) -> None:
    images = [tmp_path / f"{i}.jpg" for i in range(20)]
    assert sample_images(images, 5, seed=1) == sample_images(images, 5, seed=1)
    assert sample_images(images, 5, seed=1) != sample_images(images, 5, seed=2)
    assert sample_images(images, None) == images
    assert sample_images(images, 50) == images


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="no such dataset"):
        load_dataset(tmp_path / "missing.yaml")
    with pytest.raises(ToolError, match="no images"):
        list_images(tmp_path)
    (tmp_path / "data.yaml").write_text("path: .\nval: images\n")
    with pytest.raises(ToolError, match="names"):
        load_dataset(tmp_path / "data.yaml")
    (tmp_path / "data.yaml").write_text(": : bad yaml [")
    with pytest.raises(ToolError, match=r"data.yaml: not valid YAML \(line 1\)"):
        load_dataset(tmp_path / "data.yaml")


def test_evaluating_images_without_a_single_label_file_is_refused(tmp_path: Path) -> None:
    from edged.tools.evaluate import evaluate

    data = tiny_dataset(tmp_path)
    for label in (tmp_path / "labels" / "val").iterdir():
        label.unlink()
    with pytest.raises(ToolError, match="none of the 3 images has a label file"):
        evaluate(tmp_path / "never-loaded.onnx", data)
