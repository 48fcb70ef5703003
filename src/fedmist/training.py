"""Bring your own training loop: the :class:`Trainer` interface of FedAvg-family jobs.

Every round, a training worker receives the global weights, and its trainer trains the model on the edge's
data (:meth:`Trainer.train`); the aggregator tests each new global model on ``TEST_DATASET_URL``
(:meth:`Trainer.evaluate_global`, which defaults to :meth:`Trainer.evaluate`). fedmist does the rest --
connections, weights on the wire, aggregation, progress, status, restarts -- the same way whichever trainer
runs. The default, :class:`SGDTrainer`, is fedmist's built-in loop (momentum SGD with FedProx's proximal term).

A user trainer is a subclass named by import path in the job's env, ``trainer: package.module:MyTrainer``
(or passed as a class to :class:`fedmist.Job`). It is created once per worker process with no arguments;
``self.options`` then holds the worker's own env settings that are not fedmist parameters (a template env
``label_smoothing: "0.1"`` arrives as ``self.options["label_smoothing"] == "0.1"``).

Data arrive as tensors: ``inputs`` of shape ``(N, ...)`` exactly as the Dataset gives them (float
``(N, 1, H, W)`` in [0, 1] for the built-in image formats; whatever a ``format: python`` loader returns
otherwise) and int64 ``labels`` of shape ``(N,)``.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Final

import torch
from torch import nn

from fedmist.imports import import_subclass, is_import_path
from fedmist.models.local_train import LocalConfig, LocalResult, evaluate, train_local

__all__ = ["LocalConfig", "LocalResult", "SGDTrainer", "Trainer", "resolve_trainer", "build_trainer",
           "check_metrics"]


class Trainer(ABC):
    """Local training and evaluation of one worker in a FedAvg-family job.

    Implement :meth:`train` and :meth:`evaluate`; override :meth:`evaluate_global` to test the global model
    on the aggregator differently from local validation. Methods run in a worker thread of the worker
    process: do not start event loops; do check ``cancel`` between batches so a STOP ends training at once.
    """

    options: Mapping[str, str] = {}

    @abstractmethod
    def train(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, config: LocalConfig,
              cancel: threading.Event) -> LocalResult:
        """Train ``model`` in place for one round; return the sample count, compute seconds and metrics.

        ``config`` carries the round's ``epochs``, ``batch_size``, ``learning_rate``, ``mu`` (FedProx) and a
        per-round ``seed``. The weights left in ``model`` are what the worker sends back. ``num_samples`` weighs
        this worker's update in FedAvg, so report how many samples the update was trained on.
        """

    @abstractmethod
    def evaluate(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Metrics of ``model`` on ``(inputs, labels)``; include ``accuracy`` (0..1) and ``loss`` when they apply."""

    def evaluate_global(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """The aggregator's test of each new global model; ``accuracy`` and ``loss`` become the job's metrics,
        other keys land in the round's history entry. Defaults to :meth:`evaluate`."""
        return self.evaluate(model, inputs, labels)


class SGDTrainer(Trainer):
    """fedmist's built-in loop: momentum SGD (0.9), reshuffled every epoch, cross-entropy, FedProx's proximal
    term when ``config.mu > 0``; evaluation is accuracy and mean cross-entropy (see
    :mod:`fedmist.models.local_train`)."""

    def train(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, config: LocalConfig,
              cancel: threading.Event) -> LocalResult:
        return train_local(model, inputs, labels, config, cancel)

    def evaluate(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        return evaluate(model, inputs, labels)


#: Built-in trainers by the name the ``trainer`` env setting may use.
TRAINERS: Final[Mapping[str, type[Trainer]]] = {"sgd": SGDTrainer}


def resolve_trainer(name_or_path: str | None) -> type[Trainer]:
    """The trainer class for ``sgd`` (the default, also for ``None``/empty) or ``package.module:Class``.

    Raises :class:`~fedmist.imports.ImportPathError` (a ``ValueError``) with one line otherwise.
    """
    key = (name_or_path or "sgd").strip()
    if is_import_path(key):
        return import_subclass(key, Trainer, "trainer")
    if key.lower() in TRAINERS:
        return TRAINERS[key.lower()]
    raise ValueError(f"trainer {name_or_path!r}: use one of {', '.join(TRAINERS)} or 'package.module:Class' "
                     f"(a subclass of fedmist.training.Trainer)")


def build_trainer(name_or_path: str | None, options: Mapping[str, str] | None = None) -> Trainer:
    """An instance of :func:`resolve_trainer`'s class with ``options`` set; its constructor failing is a
    one-line ``ValueError``."""
    cls = resolve_trainer(name_or_path)
    try:
        trainer = cls()
    except Exception as exc:  # noqa: BLE001 - a user class that cannot be built is a configuration problem
        raise ValueError(f"trainer {name_or_path!r}: {cls.__qualname__}() failed: {type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    trainer.options = dict(options or {})
    return trainer


def check_metrics(metrics: object, where: str) -> dict[str, float]:
    """``metrics`` as ``{str: float}``; ``ValueError`` naming ``where`` for anything else (a non-dict, a
    non-numeric value, or a non-finite ``accuracy``)."""
    if not isinstance(metrics, Mapping):
        raise ValueError(f"{where} returned {type(metrics).__name__}, expected a dict of metric name -> number")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} returned metric {key!r} = {value!r}; metrics must be str -> number")
        out[key] = float(value)
    if "accuracy" in out and not math.isfinite(out["accuracy"]):
        raise ValueError(f"{where} returned accuracy {out['accuracy']}, which is not finite")
    return out
