"""A whole YOLO trained and tested on images: what a FedAvg-family trainer and the quality benchmark's
centralized run do with the shared loop of :mod:`fedmist.models.detect_train`.

Augmentation is ultralytics' own (``RandomHSV``, ``RandomPerspective`` translate/scale, ``RandomFlip``) at its
default gains, applied per image to the letterboxed canvas. Mosaic is left out: it needs four images per
sample and doubles the decoding work, which a 2-core edge feels more than the detector gains on small sets.
Evaluation letterboxes without augmentation and scores with :class:`fedmist.models.detect_eval.DetectionMeter`
(the MistNet cloud's meter), so both algorithms' mAP figures are computed the same way.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fedmist.data.coco import DetectionDataset
from fedmist.models.detect_eval import DetectionMeter
from fedmist.models.detect_train import Batch, detection_loss, train_detection

#: ultralytics' default augmentation gains (``ultralytics/cfg/default.yaml``).
HSV_GAINS = (0.015, 0.7, 0.4)
TRANSLATE, SCALE, FLIP_LR = 0.1, 0.5, 0.5
EVAL_BATCH = 16


@dataclass(frozen=True)
class ImageTraining:
    """One call's training settings; ``first_step``/``total_steps`` place it in the job's schedule."""

    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 0.001
    mu: float = 0.0
    seed: int = 0
    first_step: int = 0
    total_steps: int | None = None
    augment: bool = True


class Augmenter:
    """ultralytics' per-image transforms on a letterboxed RGB canvas and its normalised ``(n, 5)`` labels."""

    def __init__(self) -> None:
        from ultralytics.data.augment import RandomFlip, RandomHSV, RandomPerspective

        self.steps = (RandomHSV(*HSV_GAINS), RandomPerspective(translate=TRANSLATE, scale=SCALE),
                      RandomFlip(p=FLIP_LR, direction="horizontal"))

    def __call__(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from ultralytics.utils.instance import Instances

        size = image.shape[0]
        sample: dict[str, Any] = {
            "img": np.ascontiguousarray(image[..., ::-1]),  # ultralytics' transforms expect BGR
            "cls": labels[:, :1].copy(),
            "instances": Instances(labels[:, 1:5].copy(), segments=np.zeros((0, 1000, 2), dtype=np.float32),
                                   bbox_format="xywh", normalized=True)}
        for step in self.steps:
            sample = step(sample)
        instances = sample["instances"]
        instances.convert_bbox("xywh")
        if not instances.normalized:
            instances.normalize(size, size)
        boxes = np.clip(instances.bboxes.astype(np.float32), 0.0, 1.0)
        out = np.concatenate([sample["cls"].reshape(-1, 1).astype(np.float32), boxes.reshape(-1, 4)], axis=1)
        return np.ascontiguousarray(sample["img"][..., ::-1]), out


def to_targets(labels: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Per-image ``(n, 5)`` label rows -> ultralytics' batch dict (``batch_idx``, ``cls``, ``bboxes``)."""
    rows = [lab.reshape(-1, 5) for lab in labels]
    return {"batch_idx": torch.cat([torch.full((len(r),), float(j)) for j, r in enumerate(rows)]),
            "cls": torch.from_numpy(np.concatenate([r[:, :1] for r in rows]).astype(np.float32)),
            "bboxes": torch.from_numpy(np.concatenate([r[:, 1:5] for r in rows]).astype(np.float32))}


def images_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, 3, S, S)`` -> float in [0, 1], as ultralytics feeds its detectors."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch (a lone last image is skipped: batch norm needs two)."""
    batch_size = max(2, min(batch_size, n))
    return max(1, n // batch_size + (1 if n % batch_size >= 2 else 0))


def image_batches(data: DetectionDataset, batch_size: int, seed: int, augment: bool) -> Callable[[int], Iterator[Batch]]:
    """A batch source for :func:`train_detection`: each epoch reshuffled, each image augmented on the fly."""
    n = len(data)
    batch_size = max(2, min(batch_size, n))
    rng = np.random.default_rng(seed)
    augmenter = Augmenter() if augment else None

    def batches(epoch: int) -> Iterator[Batch]:
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue
            items = [data.load(int(i)) for i in idx]
            if augmenter is not None:
                items = [augmenter(image, labels) for image, labels in items]
            images = np.stack([image.transpose(2, 0, 1) for image, _ in items])
            yield images_tensor(images), to_targets([labels for _, labels in items]), len(idx)

    return batches


def train_on_images(model: nn.Module, data: DetectionDataset, settings: ImageTraining,
                    cancel: threading.Event | None = None,
                    on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, Any]]:
    """Train the whole detector in place on ``data`` (the FedAvg-family local step, or a centralized run)."""
    if len(data) < 2:
        raise ValueError(f"detection training needs at least 2 images, got {len(data)}")
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)  # ultralytics' transforms draw from the global generators
    np.random.seed(settings.seed % 2**32)
    criterion = detection_loss(model)
    return train_detection(model, criterion, image_batches(data, settings.batch_size, settings.seed, settings.augment),
                           epochs=settings.epochs, lr=settings.learning_rate,
                           steps_per_epoch=steps_per_epoch(len(data), settings.batch_size),
                           first_step=settings.first_step, total_steps=settings.total_steps, mu=settings.mu,
                           cancel=cancel, on_epoch=on_epoch)


def evaluate_on_images(model: nn.Module, data: DetectionDataset, nc: int, batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """mAP50 / mAP50-95 / precision / recall of the whole detector on letterboxed images (no augmentation)."""
    device = next(model.parameters()).device
    meter = DetectionMeter(nc)
    was = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            images, labels = data.batch(start, start + batch_size)
            out = model(images_tensor(images).to(device))
            raw = out[0] if isinstance(out, (tuple, list)) else out
            meter.add(raw.cpu(), labels, data.imgsz)
    model.train(was)
    return meter.result()


def total_steps(n: int, batch_size: int, epochs_per_round: int, rounds: int) -> int:
    """A job's schedule length when one edge trains ``epochs_per_round`` epochs of ``n`` images each round."""
    return max(1, rounds * epochs_per_round * steps_per_epoch(n, batch_size))

