"""fedmist.audit.utility: uploaded labels as the edges send them, and a reproducible in-process cloud run."""

from __future__ import annotations

import math

import numpy as np
import torch
from tiny_world import tiny_images, tiny_parts

from fedmist.audit.utility import UtilityConfig, job_accuracy, uploaded_labels


def test_labels_in_clear_are_unchanged_and_randomized_ones_reproducible() -> None:
    labels = np.arange(200) % 10
    clear = uploaded_labels(labels, 10, None, seed=1)
    assert clear.dtype == np.int64 and np.array_equal(clear, labels)
    noisy = uploaded_labels(labels, 10, 0.1, seed=1)
    assert np.array_equal(noisy, uploaded_labels(labels, 10, 0.1, seed=1))
    assert noisy.min() >= 0 and noisy.max() <= 9
    assert 0.5 < float((noisy != labels).mean()) < 1.0  # k-RR at 0.1 keeps ~11% of labels
    assert np.array_equal(uploaded_labels(labels, 10, 50.0, seed=1), labels)  # keep probability ~1


def test_a_job_run_trains_a_copy_and_is_reproducible() -> None:
    edge, cloud = tiny_parts()
    images, labels = tiny_images(16)
    test_images, test_labels = tiny_images(8, seed=1)
    before = {k: v.clone() for k, v in cloud.state_dict().items()}
    config = UtilityConfig(epochs=1, batch_size=8)
    first = job_accuracy(edge, cloud, images, labels, test_images, test_labels, 2.0, None, config)
    again = job_accuracy(edge, cloud, images, labels, test_images, test_labels, 2.0, None, config)
    assert all(torch.equal(before[k], v) for k, v in cloud.state_dict().items())
    assert first.test_accuracy == again.test_accuracy and first.test_accuracy * 8 == round(first.test_accuracy * 8)
    assert all(torch.equal(a, b) for a, b in zip(first.cloud.state_dict().values(), again.cloud.state_dict().values()))
    assert not all(torch.equal(before[k], v) for k, v in first.cloud.state_dict().items())
    assert first.train_s >= 0 and math.isfinite(first.train_s)
