"""The FedAvg family for YOLO detection, trainer side: the round loop of ``trainer.py`` over a COCO-layout dataset.

Each round the edge trains the whole detector on its images with the same loop, loss and optimizer as the
MistNet cloud (:mod:`fedmist.models.detect_train`, through :func:`fedmist.models.detect_images.train_on_images`,
with ultralytics' augmentation), on its ``device``. The learning rate follows one warm-up + cosine schedule over
the job's rounds, so local steps of late rounds are small, as in centralized training of the same length.
The image size and class count are the aggregator's (round config and FIT message): every edge must train the
model the aggregator averages.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from fedmist.models.local_train import LocalConfig, LocalResult
from fedmist.training import Trainer
from fedmist.wire import messages as msg
from fedmist.wire.envelope import ProtocolError
from fedmist.worker.context import WorkerContext
from fedmist.worker.errors import ConfigurationError
from fedmist.worker.rounds.trainer import RoundsTrainer, run_rounds_trainer

DEFAULT_IMGSZ = 640


class DetectionTrainer(Trainer):
    """Local YOLO training for one round (``inputs`` is the edge's :class:`~fedmist.data.coco.DetectionDataset`;
    ``labels`` its per-image box arrays, used only to count and check them)."""

    def __init__(self, nc: int = 80) -> None:
        self.nc = nc

    def train(self, model: nn.Module, inputs: Any, labels: Any, config: LocalConfig,
              cancel: threading.Event) -> LocalResult:
        from fedmist.models.detect_images import ImageTraining, steps_per_epoch, train_on_images

        started = time.perf_counter()
        per_round = config.epochs * steps_per_epoch(len(inputs), config.batch_size)
        settings = ImageTraining(epochs=config.epochs, batch_size=config.batch_size,
                                 learning_rate=config.learning_rate, mu=config.mu, seed=config.seed,
                                 first_step=(config.round - 1) * per_round, total_steps=config.rounds * per_round)
        history = train_on_images(model, inputs, settings, cancel)
        elapsed = time.perf_counter() - started
        if history and history[-1].get("cancelled"):
            return LocalResult(len(inputs), elapsed, cancelled=True)
        last = history[-1]
        metrics = {f"train_{k}": float(v) for k, v in last.items() if k.endswith("loss")}
        return LocalResult(num_samples=len(inputs), compute_s=elapsed, metrics=metrics)

    def evaluate(self, model: nn.Module, inputs: Any, labels: Any) -> dict[str, float]:
        from fedmist.models.detect_images import evaluate_on_images

        return evaluate_on_images(model, inputs, self.nc)


class DetectLocalData:
    """The edge's COCO-layout images (read batch by batch) and their label rows (read once, to check them)."""

    def __init__(self, ctx: WorkerContext) -> None:
        from fedmist.models.yolo_env import prepare_ultralytics

        prepare_ultralytics()
        from fedmist.data.coco import DetectionDataset, label_path_of, read_labels

        where = ctx.dataset_name or ctx.dataset_url
        try:
            self.x = DetectionDataset.open(ctx.dataset_url, int(ctx.params.imgsz or DEFAULT_IMGSZ))
            self.y = [read_labels(label_path_of(path)) for path in self.x.images]
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"dataset {where}: {str(exc).splitlines()[0]}") from None
        if len(self.x) < 2:
            raise ConfigurationError(f"dataset {where}: YOLO training needs at least 2 images, found {len(self.x)}")
        self.val = None


class DetectRoundsTrainer(RoundsTrainer):
    """A FedAvg-family trainer holding a YOLO detector on its ``device``."""

    def __init__(self, ctx: WorkerContext, data: DetectLocalData, reporter: Any) -> None:
        from fedmist.models.device import describe, resolve_device

        super().__init__(ctx, data, reporter)
        try:
            self.device = resolve_device(ctx.params.device)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        reporter.update(force=True, task="detect", device=describe(self.device))

    def _build(self, meta: msg.FitMeta) -> tuple[nn.Module, Trainer]:
        from fedmist.models.yolo import build_yolo, is_yolo_name, yaml_name

        if not is_yolo_name(meta.model):
            raise ProtocolError(f"the aggregator runs model {meta.model!r}, but this edge holds a detection dataset")
        classes = np.concatenate([lab[:, 0] for lab in self.data.y]) if self.data.y else np.zeros(0)
        if len(classes) and int(classes.max()) >= meta.num_classes:
            raise ConfigurationError(f"dataset {self.ctx.dataset_name or self.ctx.dataset_url}: class "
                                     f"{int(classes.max())} in its labels, but the job has {meta.num_classes} classes")
        try:
            model = build_yolo(yaml_name(meta.model), meta.num_classes).to(self.device)
        except ValueError as exc:
            raise ProtocolError(f"FIT names an unusable model: {exc}") from None
        if self.ctx.params.trainer:
            raise ConfigurationError("trainer: YOLO jobs train with fedmist's detection loop; a custom trainer "
                                     "is not supported for them yet")
        return model, DetectionTrainer(meta.num_classes)

    async def fit(self, channel: Any, number: int, meta: msg.FitMeta, payload: bytearray) -> Any:
        imgsz = meta.config.get("imgsz", self.ctx.params.imgsz or DEFAULT_IMGSZ)
        if not isinstance(imgsz, int) or imgsz < 32 or imgsz % 32:
            raise ProtocolError(f"round config imgsz={imgsz!r} is not a multiple of 32")
        self.data.x.imgsz = imgsz
        return await super().fit(channel, number, meta, payload)


def run_detect_rounds_trainer(ctx: WorkerContext) -> dict[str, Any]:
    """Take part in a FedAvg-family YOLO job until the aggregator says STOP."""
    torch.set_num_threads(max(1, ctx.threads))
    return run_rounds_trainer(ctx, DetectLocalData, DetectRoundsTrainer)
