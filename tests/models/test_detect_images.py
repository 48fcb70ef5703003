"""Whole-detector training helpers: ultralytics' augmentation keeps boxes valid, batches in ultralytics' format."""

from __future__ import annotations

import numpy as np
import torch

from fedmist.models.detect_images import Augmenter, steps_per_epoch, to_targets
from fedmist.models.yolo_env import prepare_ultralytics


def test_augmented_boxes_stay_normalised_and_keep_their_classes():
    prepare_ultralytics()
    np.random.seed(0)
    image = np.full((64, 64, 3), 114, dtype=np.uint8)
    image[16:48, 8:24] = 255  # one bright object, left of centre
    labels = np.array([[2, 0.25, 0.5, 0.25, 0.5]], dtype=np.float32)
    augment = Augmenter()
    for _ in range(20):
        out_image, out = augment(image, labels)
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert out.shape[1] == 5 and set(out[:, 0]) <= {2.0}
        assert np.all((out[:, 1:] >= 0) & (out[:, 1:] <= 1))


def test_targets_and_steps_per_epoch():
    targets = to_targets([np.array([[1, .5, .5, .2, .2]], np.float32), np.zeros((0, 5), np.float32),
                          np.array([[0, .1, .1, .1, .1], [2, .9, .9, .1, .1]], np.float32)])
    assert targets["batch_idx"].tolist() == [0.0, 2.0, 2.0]
    assert targets["cls"].tolist() == [[1.0], [0.0], [2.0]]
    assert torch.equal(targets["bboxes"][1], torch.tensor([.1, .1, .1, .1]))
    # a lone last image is skipped (batch norm needs two), two or more make a batch
    assert [steps_per_epoch(n, 8) for n in (2, 8, 9, 10, 96)] == [1, 1, 1, 2, 12]
