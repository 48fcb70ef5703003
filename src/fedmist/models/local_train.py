"""The trainer's default local step of the FedAvg family: SGD with momentum over the local data, the FedProx
proximal term, and plain evaluation (local validation on the trainer, the test set on the aggregator).

Why hand-rolled on ``models.optim.MomentumSGD`` instead of ``torch.optim.SGD``: the first ``torch.optim``
optimizer in a process imports ``torch._dynamo`` (seconds on 2 cores, paid by every trainer at start), while
the update is the same (``torch.optim.SGD(momentum=m)``, a fresh optimizer each round as Flower's clients
do). The proximal term is added to the gradient as ``mu * (w - w_global)`` -- the exact gradient of
``mu/2 ||w - w_global||^2`` (``strategy.proximal_gradient`` is the numpy reference it is tested against).

Training runs in the channels-last layout (model and each batch, :mod:`fedmist.models.layout`), as the
MistNet cloud does. Measured on the 2-core machine, LeNet-5 at batch 32 on one thread: 7.7-8.4 ms per step
against 9.5-10.6 ms in the default layout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedmist.data.tensors import model_input
from fedmist.models.layout import channels_last_training, to_channels_last
from fedmist.models.optim import MomentumSGD

EVAL_BATCH = 1000


@dataclass(frozen=True)
class LocalConfig:
    """One round of local training, as the trainer resolved it from its env and the round's config."""

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.01
    momentum: float = 0.9
    mu: float = 0.0
    seed: int = 0
    round: int = 1  # this round and the job's planned rounds: where a job-long learning-rate schedule stands
    rounds: int = 1


@dataclass
class LocalResult:
    """What one round of local training produced, besides the weights left in the model."""

    num_samples: int
    compute_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False


def state_to_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's state dict as contiguous numpy arrays (copies, safe to send while training goes on)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_numpy_state(model: nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Copy ``weights`` into ``model``; a missing/unexpected key or a shape mismatch raises ValueError."""
    state = model.state_dict()
    if set(weights) != set(state):
        missing, unexpected = sorted(set(state) - set(weights)), sorted(set(weights) - set(state))
        raise ValueError(f"weights do not fit the model (missing {missing[:4]}, unexpected {unexpected[:4]})")
    with torch.no_grad():
        for key, target in state.items():
            array = np.asarray(weights[key])
            source = torch.from_numpy(array if array.flags.writeable else array.copy())  # one tensor at a time
            if tuple(source.shape) != tuple(target.shape):
                raise ValueError(f"{key}: shape {tuple(source.shape)} does not fit {tuple(target.shape)}")
            target.copy_(source)


def train_local(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: LocalConfig,
                cancel: threading.Event | None = None,
                on_epoch: Callable[[int, float], None] | None = None) -> LocalResult:
    """Train ``model`` in place for ``config.epochs`` over ``(images, labels)``; reshuffled every epoch.

    ``images`` is float (N, C, H, W), ``labels`` int64 (N,). With ``config.mu > 0`` the proximal term pulls
    the weights toward the ones the round started from. ``cancel`` is checked between batches.
    """
    started = time.perf_counter()
    with channels_last_training(model):
        return _train_epochs(model, images, labels, config, cancel, on_epoch, started)


def _train_epochs(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: LocalConfig,
                  cancel: threading.Event | None, on_epoch: Callable[[int, float], None] | None,
                  started: float) -> LocalResult:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params] if config.mu > 0 else None
    sgd = MomentumSGD(params)
    gen = torch.Generator().manual_seed(config.seed)
    n = len(labels)
    total_loss, total_correct, seen = 0.0, 0, 0
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, config.batch_size):
            if cancel is not None and cancel.is_set():
                return LocalResult(n, time.perf_counter() - started, cancelled=True)
            idx = order[start:start + config.batch_size]
            x, y = to_channels_last(images[idx]), labels[idx]
            sgd.zero_grad()
            out = model(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            if anchor is not None:
                with torch.no_grad():
                    drift = torch._foreach_sub([p.detach() for p in params], anchor)
                    torch._foreach_add_([p.grad for p in params], drift, alpha=config.mu)
            sgd.step(config.learning_rate, config.momentum)
            if epoch == config.epochs:
                total_loss += loss.item() * len(y)
                total_correct += int((out.argmax(1) == y).sum())
                seen += len(y)
        if on_epoch is not None:
            on_epoch(epoch, time.perf_counter() - started)
    metrics = {"train_loss": total_loss / max(1, seen), "train_accuracy": total_correct / max(1, seen)}
    return LocalResult(num_samples=n, compute_s=time.perf_counter() - started, metrics=metrics)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = EVAL_BATCH) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on float images (N, C, H, W) and int64 labels."""
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(labels), batch):
        out = model(images[start:start + batch])
        y = labels[start:start + batch]
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
    n = max(1, len(labels))
    return {"accuracy": correct / n, "loss": loss / n}


def as_tensors(images: np.ndarray | torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, H, W) images and integer labels -> float (N, 1, H, W) in [0, 1] and int64 (one rule everywhere);
    a user loader's input tensor (``format: python``) is kept as it is."""
    return model_input(images), torch.from_numpy(np.asarray(labels).astype(np.int64))


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``: a seeded random ``fraction`` of ``n`` held out (at least 1 when fraction > 0)."""
    order = np.random.default_rng(seed).permutation(n)
    k = 0 if fraction <= 0 else min(n - 1, max(1, int(round(fraction * n))))
    return np.sort(order[k:]), np.sort(order[:k])


def format_for_url(url: str) -> str:
    """Dataset format of a bare URL (``TEST_DATASET_URL`` has no Dataset manifest): by suffix, else IDX."""
    suffix = Path(url).suffix.lower()
    return {".txt": "txt", ".csv": "csv"}.get(suffix, "idx")
