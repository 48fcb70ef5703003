"""fedmist.models.yolo_predict: boxes mapped back through the letterbox, PNGs written, bad images refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedmist.models.yolo_predict import _unletterbox, predict_images


def test_boxes_are_mapped_back_to_original_pixels_and_clipped() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 640.0, 640.0]], np.float32)
    out = _unletterbox(boxes, 0.5, (4, 8), (100, 90))
    np.testing.assert_allclose(out, [[12.0, 24.0, 92.0, 90.0], [0.0, 0.0, 100.0, 90.0]])
    assert boxes[0, 0] == 10.0  # the input is not changed


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from fedmist.models.yolo_env import prepare_ultralytics

    prepare_ultralytics()
    from fedmist.models.weights import save_weights
    from fedmist.models.yolo import build_yolo

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("yolo-predict")
    path = save_weights(build_yolo("yolov5n.yaml", nc=2).state_dict(), folder / "m.pth")
    Path(f"{path}.json").write_text(json.dumps({"architecture": "yolov5n.yaml", "nc": 2, "names": ["a", "b"],
                                                "imgsz": 64}))
    return path


def test_each_image_becomes_a_png_of_its_own_size(model_file: Path, tmp_path: Path) -> None:
    image = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(image)
    written = predict_images(model_file, [image], tmp_path / "out", conf=0.99)
    assert [(p, type(n)) for p, n in written] == [(tmp_path / "out" / "photo.png", int)]
    with Image.open(tmp_path / "out" / "photo.png") as png:
        assert png.size == (80, 48)


def test_a_missing_image_is_a_one_line_value_error(model_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    with pytest.raises(ValueError) as info:
        predict_images(model_file, [missing], tmp_path / "out")
    assert str(info.value) == f"{missing}: unreadable image ([Errno 2] No such file or directory: '{missing}')"


def test_a_file_that_is_not_an_image_is_a_one_line_value_error(model_file: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ValueError) as info:
        predict_images(model_file, [text], tmp_path / "out")
    assert str(info.value) == f"{text}: not an image (PIL cannot identify its format)"
