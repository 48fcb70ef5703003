"""The COCO-layout loader and the synthetic detection set (real files, real Fashion-MNIST objects)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from fedmist.data.coco import (
    VAL_SPLITS,
    DetectionDataset,
    boxes_to_letterbox,
    find_split,
    label_path_of,
    letterbox,
    read_class_names,
    read_labels,
)
from fedmist.data.synth_detection import FASHION_CLASSES, synthesize_detection

FMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "COCO"
    counts = synthesize_detection(FMNIST, out, train=6, val=3, size=96, objects=(2, 4), seed=0)
    return out, counts


def test_synth_writes_the_coco128_layout(synth):
    out, counts = synth
    assert sorted(p.name for p in (out / "images" / "train").iterdir())[:2] == ["train_000000.jpg", "train_000001.jpg"]
    assert len(list((out / "images" / "val").iterdir())) == 3
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["nc"] == 10 and data["names"][9] == "Ankle boot" and data["val"] == "images/val"
    rows = [read_labels(p, nc=10) for p in sorted((out / "labels" / "train").iterdir())]
    assert sum(len(r) for r in rows) == counts["train"] and all(2 <= len(r) <= 4 for r in rows)
    assert read_class_names(out) == list(FASHION_CLASSES)
    with Image.open(out / "images" / "train" / "train_000000.jpg") as img:
        assert img.size == (96, 96)


def test_labels_match_the_pasted_objects(synth):
    """Inside each labelled box the image differs from its background border: the boxes sit on objects."""
    out, _ = synth
    ds = DetectionDataset.open(out, imgsz=96)
    image, labels = ds.load(0)
    assert labels.shape[1] == 5 and np.all((labels[:, 1:] > 0) & (labels[:, 1:] <= 1))
    for _, cx, cy, w, h in labels:
        assert 12 / 96 * 0.3 < w < 0.5 and 12 / 96 * 0.3 < h < 0.5


def test_dataset_batches_are_letterboxed_uint8(synth):
    ds = DetectionDataset.open(synth[0], imgsz=64)
    images, labels = ds.batch(0, 4)
    assert images.dtype == np.uint8 and images.shape == (4, 3, 64, 64) and len(labels) == 4


def test_find_split_handles_the_nested_coco128_zip_layout(tmp_path):
    nested = tmp_path / "COCO" / "coco128" / "images" / "train2017"
    nested.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(nested / "a.jpg")
    assert find_split(tmp_path / "COCO") == nested
    assert label_path_of(nested / "a.jpg") == tmp_path / "COCO" / "coco128" / "labels" / "train2017" / "a.txt"
    assert find_split(tmp_path / "COCO", VAL_SPLITS) == nested  # the only split serves as validation too
    with pytest.raises(ValueError, match=r"no split named val among"):
        (tmp_path / "COCO" / "coco128" / "images" / "other").mkdir()
        find_split(tmp_path / "COCO", ("val",))


def test_letterbox_moves_boxes_with_the_image():
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    canvas, scale, pad = letterbox(img, 64)
    assert (scale, pad) == (0.32, (0, 16))
    assert tuple(canvas[0, 0]) == (114, 114, 114) and tuple(canvas[32, 32]) == (255, 0, 0)
    box = np.array([[3, 0.5, 0.5, 0.5, 1.0]], dtype=np.float32)  # centre, half the width, full height
    moved = boxes_to_letterbox(box, (200, 100), scale, pad, 64)
    np.testing.assert_allclose(moved, [[3, 0.5, 0.5, 0.5, 0.5]], atol=1e-6)


def test_bad_label_lines_name_file_and_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("0 0.5 0.5 0.1 0.1\n12 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValueError, match=r"x.txt:2: bad YOLO label line '12 0.5 0.5 0.1 0.1' \(classes are 0..9\)"):
        read_labels(path, nc=10)
    path.write_text("0 0.5 1.5 0.1 0.1\n")
    with pytest.raises(ValueError, match=r"x.txt:1: box values must be normalised"):
        read_labels(path)
    assert read_labels(tmp_path / "absent.txt").shape == (0, 5)


def test_imgsz_must_be_a_multiple_of_32(synth):
    with pytest.raises(ValueError, match="imgsz must be a multiple of 32"):
        DetectionDataset.open(synth[0], imgsz=100)
