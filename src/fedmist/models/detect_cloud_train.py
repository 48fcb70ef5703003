"""Cloud side of MistNet for detection: train the post-cut YOLO layers on packed noisy bits with ultralytics'
detection loss, evaluate mAP through the clean channel (DESIGN 5.6-5.7).

Inputs follow the classification cloud's rule (:mod:`fedmist.models.cloud_train`): training bits are debiased
``(z - q) / (p - q)`` and test bits are used as they are (or, without debiasing, test bits are mapped to the
training expectation), so train and test inputs share one expectation. The edge's batch-norm layers never
train; the cloud's do, on the cloud's batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fedmist.models.cloud_train import _Decoder, eval_input_values, input_values, per_source_epsilons
from fedmist.models.detect_eval import DetectionMeter
from fedmist.wire.detect_records import bits_bytes, decode_boxes

DEFAULT_HYP = {"box": 7.5, "cls": 0.5, "dfl": 1.5}


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


def detection_loss(full_model: nn.Module) -> Callable:
    """ultralytics' detection loss (``v8DetectionLoss``) bound to the model's head and default gains."""
    from types import SimpleNamespace

    from ultralytics.utils.loss import v8DetectionLoss

    if not hasattr(full_model, "args") or not hasattr(full_model.args, "box"):
        full_model.args = SimpleNamespace(**DEFAULT_HYP)
    return v8DetectionLoss(full_model)


def _lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 1% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def train_detection_cloud(
    cloud: nn.Module, full_model: nn.Module, features: DetectionFeatures, *, epochs: int, batch_size: int,
    lr: float, epsilon: float | Sequence[float], debias: bool = True, seed: int = 0,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``cloud`` (which shares its modules with ``full_model``) in place with AdamW; per-epoch stats.
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
    steps = epochs * math.ceil(n / batch_size)
    warmup = min(max(1, steps // 10), 100)
    params = [p for p in cloud.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    other = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4}, {"params": other, "weight_decay": 0.0}], lr=lr)
    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(1, epochs + 1):
        cloud.train()
        t0 = time.perf_counter()
        order = rng.permutation(n)
        sums = torch.zeros(3, dtype=torch.float64)
        seen = 0
        for start in range(0, n, batch_size):
            idx = np.sort(order[start:start + batch_size])
            if len(idx) < 2:  # batch norm needs two samples; a lone leftover waits for the next epoch
                continue
            packed, targets = features.batch(idx)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, steps, lr, warmup)
            preds = cloud(decode(packed, features.origins(idx) if decode.per_source else None))
            loss, items = criterion(preds, targets)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            torch.nn.utils.clip_grad_norm_(params, max_norm=10.0)
            opt.step()
            step += 1
            values = torch.stack(list(items.values())) if isinstance(items, dict) else items
            sums += values.detach().double() * len(idx)
            seen += len(idx)
        mean = (sums / max(1, seen)).tolist()
        stats = {"loss": float(sum(mean)), "box_loss": mean[0], "cls_loss": mean[1], "dfl_loss": mean[2],
                 "seconds": time.perf_counter() - t0, "lr": opt.param_groups[0]["lr"]}
        history.append(stats)
        if on_epoch is not None:
            on_epoch(epoch, stats)
    cloud.eval()
    return history


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
    cloud.eval()
    with torch.inference_mode():
        for start in range(0, len(packed), batch_size):
            out = cloud(decode(packed[start:start + batch_size]))
            raw = out[0] if isinstance(out, (tuple, list)) else out
            meter.add(raw, labels[start:start + batch_size], imgsz)
    cloud.train(was)
    return meter.result()
