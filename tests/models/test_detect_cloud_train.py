"""fedmist.models.detect_cloud_train's pure parts: the learning-rate schedule and records seen as batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedmist.models.detect_cloud_train import DetectionFeatures
from fedmist.models.detect_train import lr_at as _lr_at
from fedmist.wire.detect_records import encode_boxes


def test_the_rate_warms_up_linearly_then_decays_by_cosine_to_one_percent() -> None:
    assert [_lr_at(s, 10, 1.0, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert _lr_at(4, 10, 1.0, 4) == pytest.approx(1.0)
    assert _lr_at(7, 10, 1.0, 4) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert _lr_at(10, 10, 2.0, 4) == pytest.approx(0.02)
    assert _lr_at(0, 0, 1.0, 0) == pytest.approx(1.0)  # no warm-up, no steps: no division by zero


class Source:
    """A store source of two records: one packed bits byte (8 features), then the box block."""

    feature_shape = (2, 2, 2)

    def __init__(self) -> None:
        blocks, counts, _ = encode_boxes([np.array([[3, 0.5, 0.25, 0.5, 0.5]], np.float32),
                                          np.array([[0, 0.5, 0.5, 1, 1], [1, 0, 0, 0.1, 0.1]], np.float32)])
        self.rows = np.concatenate([np.array([[0xF0], [0x0F]], np.uint8), blocks], axis=1)
        self.counts = counts

    def __len__(self) -> int:
        return 2

    def batch(self, indices: np.ndarray):
        return self.rows[indices], self.counts[indices]

    def origins(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(indices) % 2


def test_records_become_bits_and_ultralytics_targets() -> None:
    features = DetectionFeatures(Source())
    assert (len(features), features.feature_shape, features.nbits) == (2, (2, 2, 2), 1)
    bits, targets = features.batch(np.array([1, 0]))
    assert bits.tolist() == [[0x0F], [0xF0]]
    assert targets["batch_idx"].tolist() == [0.0, 0.0, 1.0]
    assert targets["cls"].tolist() == [[0.0], [1.0], [3.0]]
    torch.testing.assert_close(targets["bboxes"], torch.tensor([[0.5, 0.5, 1, 1], [0, 0, 0.1, 0.1],
                                                                [0.5, 0.25, 0.5, 0.5]]), atol=1e-4, rtol=0)
    assert features.origins(np.array([0, 1, 2])).tolist() == [0, 1, 0]
