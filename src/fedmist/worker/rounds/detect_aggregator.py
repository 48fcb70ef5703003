"""The FedAvg family for YOLO detection, aggregator side: the round engine of ``aggregator.py`` with a YOLO model.

What differs from classification, and only that, lives here: the model (an ultralytics ``DetectionModel`` from
its yaml, optionally started from pretrained weights), the class count (the job's ``num_classes``, else the
test set's data yaml, else the pretrained file), the test (mAP50 / mAP50-95 on ``TEST_DATASET_URL``'s val
split each round, :func:`fedmist.models.detect_images.evaluate_on_images`), the round config (``imgsz`` joins
epochs / batch size / learning rate) and the saved model (the state dict, plus an ultralytics checkpoint that
``ultralytics.YOLO(path)`` loads). Aggregation is the strategy's, unchanged: floating entries -- weights and
BatchNorm running statistics -- are averaged, the integer ``num_batches_tracked`` counters are not
(``strategy/aggregate.py``).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from fedmist.wire import messages as msg
from fedmist.worker.context import WorkerContext
from fedmist.worker.errors import ConfigurationError
from fedmist.worker.rounds.aggregator import RoundsJob, run_rounds_aggregator

log = logging.getLogger("fedmist.aggregator")


class DetectRoundsJob(RoundsJob):
    """A FedAvg-family job whose model is a YOLO detector."""

    def __init__(self, ctx: WorkerContext) -> None:
        from fedmist.models.device import describe, resolve_device
        from fedmist.models.yolo_env import prepare_ultralytics

        prepare_ultralytics()
        params = ctx.params
        try:
            self.device = resolve_device(params.device)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self.device_name = describe(self.device)
        self.imgsz = int(params.imgsz or 640)
        self.pretrained = None
        if ctx.pretrained_model_url:
            self.pretrained = self._load_pretrained(ctx)
        self.nc, self.names = self._classes(ctx)
        super().__init__(ctx)
        if not params.model and self.pretrained is not None:
            self.model_name = self.pretrained.cfg
        self.reporter.update(force=True, task="detect", device=self.device_name, imgsz=self.imgsz)
        log.info("YOLO %s, %d classes, imgsz %d, trainers train on %s", self.model_name, self.nc, self.imgsz,
                 params.device)

    @staticmethod
    def _load_pretrained(ctx: WorkerContext):
        from fedmist.models.yolo import load_yolo, yaml_name

        model = ctx.params.model
        try:
            return load_yolo(ctx.pretrained_model_url, yaml_name(model) if model else None)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigurationError(f"pretrained model {ctx.pretrained_model_url}: {str(exc).splitlines()[0]}") from None

    def _classes(self, ctx: WorkerContext) -> tuple[int, list[str]]:
        """The job's class count and names: num_classes, else the test set's data yaml, else the pretrained file."""
        from fedmist.data.coco import read_class_names

        url = ctx.params.test_dataset_url
        names = read_class_names(url) if url and Path(url).exists() else None
        nc = ctx.params.num_classes
        if nc is None and names:
            nc = len(names)
        if nc is None and self.pretrained is not None:
            nc, names = self.pretrained.nc, self.pretrained.names
        if nc is None:
            raise ConfigurationError("num_classes: set it on the aggregator, or give TEST_DATASET_URL a data yaml "
                                     "with the class names (YOLO jobs need the class count)")
        if not names or len(names) != nc:
            names = [str(i) for i in range(nc)]
        return nc, names

    def _build_model(self) -> torch.nn.Module:
        from fedmist.models.yolo import build_yolo, yaml_name

        name = self.model_name or (self.pretrained.cfg if self.pretrained is not None else None)
        try:
            return build_yolo(yaml_name(name), self.nc)
        except ValueError as exc:
            raise ConfigurationError(f"model {name}: {exc}") from None

    def _init_weights(self) -> None:
        if self.pretrained is None:
            super()._init_weights()
            return
        try:
            self.model.load_state_dict(self.pretrained.model.state_dict())
        except RuntimeError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise ConfigurationError(f"pretrained model {self.ctx.pretrained_model_url} does not fit "
                                     f"{self.model_name} with {self.nc} classes: {lines[-1][:200]}") from None
        self.pretrained.model = None  # the job's model holds the weights now

    def _load_test_set(self, url: str | None):
        if not url:
            log.warning("TEST_DATASET_URL not set: rounds run without mAP")
            return None
        from fedmist.data.coco import VAL_SPLITS, DetectionDataset
        from fedmist.data.loaders import test_dataset_error

        try:
            return DetectionDataset.open(url, self.imgsz, prefer=VAL_SPLITS, nc=self.nc)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(test_dataset_error(url, exc)) from None

    def fit_meta(self, config: dict[str, Any]) -> msg.FitMeta:
        params = self.ctx.params
        defaults = {"epochs": params.epochs, "batch_size": params.batch_size, "learning_rate": params.learning_rate,
                    "imgsz": self.imgsz}
        extra = {k: v for k, v in defaults.items() if v is not None}
        return msg.FitMeta(config={**extra, **config}, model=self.model_name, num_classes=self.nc,
                           rounds=self.rounds, trainer=params.trainer or "")

    def evaluate_global(self) -> dict[str, float]:
        """mAP50 / mAP50-95 / precision / recall of the global model on the test set (runs in a worker thread)."""
        if self.test is None:
            return {}
        from fedmist.models.detect_images import evaluate_on_images

        model = self.model if self.device.type == "cpu" else copy.deepcopy(self.model).to(self.device)
        try:
            return evaluate_on_images(model, self.test, self.nc)
        except ValueError as exc:
            raise ConfigurationError(f"TEST_DATASET_URL {self.ctx.params.test_dataset_url}: {exc}") from None

    def headline_metrics(self, result: dict[str, float]) -> dict[str, Any]:
        return {k: result.get(k) for k in ("mAP50", "mAP50-95")} | {"device": self.device_name}

    def model_metadata(self, path: Path) -> dict[str, Any]:
        """Write the ultralytics checkpoint beside the state dict; name it and the detector in the JSON."""
        from fedmist.models.yolo import save_ultralytics_checkpoint, yaml_name

        self.model.eval()
        ultra = save_ultralytics_checkpoint(self.model, path.with_name(f"{path.stem}-ultralytics.pt"), self.names,
                                            {"imgsz": self.imgsz})
        return {"architecture": yaml_name(self.model_name), "task": "detect", "nc": self.nc, "names": self.names,
                "imgsz": self.imgsz, "device": self.device_name, "ultralytics_checkpoint": str(ultra)}


def run_detect_rounds_aggregator(ctx: WorkerContext) -> dict[str, Any]:
    """Run a FedAvg-family YOLO job on the cloud; return its final metrics."""
    return run_rounds_aggregator(ctx, DetectRoundsJob)
