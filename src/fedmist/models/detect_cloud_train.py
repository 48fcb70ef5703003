"""Cloud side of MistNet for detection: train the post-cut YOLO layers on packed noisy bits with ultralytics'
detection loss, evaluate mAP through the clean channel (DESIGN 5.6-5.7).

Inputs follow the classification cloud's rule (:mod:`fedmist.models.cloud_train`): training bits are debiased
``(z - q) / (p - q)`` and test bits are used as they are (or, without debiasing, test bits are mapped to the
training expectation), so train and test inputs share one expectation. The edge's batch-norm layers never
train; the cloud's do, on the cloud's batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fedmist.models.cloud_train import _Decoder, eval_input_values, input_values, per_source_epsilons
from fedmist.models.detect_eval import DetectionMeter
from fedmist.models.detect_train import Batch, detection_loss, train_detection
from fedmist.wire.detect_records import bits_bytes, decode_boxes


class DetectionFeatures:
    """A store source (packed bits + box block, box counts as labels) seen as detection batches."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.feature_shape = tuple(source.feature_shape)
        self.nbits = bits_bytes(self.feature_shape)

    def __len__(self) -> int:
        return len(self.source)

    def origins(self, indices: np.ndarray) -> np.ndarray:
        """The record source (edge) of each sample, for per-edge debiasing."""
        return self.source.origins(indices)

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        rows, counts = self.source.batch(indices)
        batch_idx, cls, boxes = decode_boxes(rows[:, self.nbits:], counts)
        return rows[:, :self.nbits], {"batch_idx": torch.from_numpy(batch_idx), "cls": torch.from_numpy(cls)[:, None],
                                      "bboxes": torch.from_numpy(boxes)}


def train_detection_cloud(
    cloud: nn.Module, full_model: nn.Module, features: DetectionFeatures, *, epochs: int, batch_size: int,
    lr: float, epsilon: float | Sequence[float], debias: bool = True, seed: int = 0,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``cloud`` (which shares its modules with ``full_model``) in place with the shared detection loop
    (:func:`fedmist.models.detect_train.train_detection`); per-epoch stats.
    ``epsilon``: one value, or one per record source (each edge's records debiased with its own)."""
    n = len(features)
    if n == 0:
        raise ValueError("no training features: the feature store is empty")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    criterion = detection_loss(full_model)
    decode = _Decoder(features.feature_shape, [input_values(e, debias, train=True) for e in per_source_epsilons(epsilon)])
    if decode.per_source and not hasattr(features, "origins"):
        raise ValueError("several epsilons given, but the features do not name each sample's origin")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    batch_size = min(batch_size, n)

    def batches(epoch: int) -> Iterator[Batch]:
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = np.sort(order[start:start + batch_size])
            if len(idx) < 2:  # batch norm needs two samples; a lone leftover waits for the next epoch
                continue
            packed, targets = features.batch(idx)
            yield decode(packed, features.origins(idx) if decode.per_source else None), targets, len(idx)

    return train_detection(cloud, criterion, batches, epochs=epochs, lr=lr, steps_per_epoch=math.ceil(n / batch_size),
                           on_epoch=on_epoch)


def evaluate_detection(
    cloud: nn.Module, packed: np.ndarray, labels: list[np.ndarray], feature_shape: tuple[int, ...], imgsz: int,
    nc: int, epsilon: float | Sequence[float], debias: bool, batch_size: int = 16,
    weights: Sequence[int] | None = None,
) -> dict[str, float]:
    """mAP50 / mAP50-95 / precision / recall of the cloud on clean channel bits (binarized, never flipped)."""
    if len(packed) == 0 or len(packed) != len(labels):
        raise ValueError(f"validation set needs matching, non-empty features and labels: {len(packed)} vs {len(labels)}")
    epsilons = per_source_epsilons(epsilon)
    decode = _Decoder(tuple(feature_shape), eval_input_values(epsilons, weights or [1] * len(epsilons), debias))
    meter = DetectionMeter(nc)
    was = cloud.training
    device = next(cloud.parameters()).device
    cloud.eval()
    with torch.inference_mode():
        for start in range(0, len(packed), batch_size):
            out = cloud(decode(packed[start:start + batch_size]).to(device))
            raw = out[0] if isinstance(out, (tuple, list)) else out
            meter.add(raw.cpu(), labels[start:start + batch_size], imgsz)
    cloud.train(was)
    return meter.result()
