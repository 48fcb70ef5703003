"""The job's own accuracy at each epsilon: an in-process run of the cloud training the aggregator does.

Same code as a real job (:func:`fedmist.models.cloud_train.train_cloud` / ``evaluate_cloud``) on the same
inputs: every edge image through :func:`fedmist.models.extract.extract_bits` at ``eps`` (labels through
k-ary randomized response when ``label_epsilon`` is set, as :mod:`fedmist.worker.mistnet.trainer` does),
the cloud part initialised from the pretrained weights, evaluated on the test set through the clean bit
channel. Only the transport is skipped, which does not change what is learned.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedmist.models.cloud_train import InMemoryPackedSource, evaluate_cloud, train_cloud
from fedmist.models.extract import channel_features, extract_bits
from fedmist.privacy.channel import label_randomized_response


@dataclass
class UtilityConfig:
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.05
    debias: bool = True
    num_classes: int = 10
    seed: int = 0


@dataclass
class UtilityResult:
    cloud: nn.Module
    test_accuracy: float
    train_s: float


def uploaded_labels(labels: np.ndarray, k: int, label_epsilon: float | None, seed: int) -> np.ndarray:
    """Labels as the edges upload them (k-RR at ``label_epsilon``, unchanged when it is ``None``)."""
    if label_epsilon is None:
        return np.asarray(labels, dtype=np.int64)
    gen = torch.Generator().manual_seed(seed)
    return label_randomized_response(torch.as_tensor(labels), k, label_epsilon, gen).numpy()


def job_accuracy(
    edge: nn.Module,
    cloud: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    eps: float,
    label_epsilon: float | None,
    config: UtilityConfig,
) -> UtilityResult:
    """Train a copy of ``cloud`` on the edges' uploads at ``eps``; return it with its test accuracy."""
    packed, shape = extract_bits(edge, images, eps, seed=config.seed + 1)
    y = uploaded_labels(labels, config.num_classes, label_epsilon, config.seed + 2)
    model = copy.deepcopy(cloud)
    run = train_cloud(model, InMemoryPackedSource(packed, y, shape), epochs=config.epochs,
                      batch_size=config.batch_size, max_lr=config.learning_rate, epsilon=eps,
                      debias=config.debias, seed=config.seed)
    metrics = evaluate_cloud(model, channel_features(edge, test_images), test_labels, shape, eps, config.debias)
    return UtilityResult(cloud=model, test_accuracy=metrics["accuracy"], train_s=float(run["seconds"]))
