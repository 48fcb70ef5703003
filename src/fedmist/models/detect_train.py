"""The one detection training loop: ultralytics' detection loss, AdamW, warm-up + cosine, gradient clipping.

Why one loop for two callers: the MistNet cloud (post-cut layers on debiased bits, DESIGN 5.6) and a FedAvg
trainer (the whole YOLO on augmented images, :mod:`fedmist.models.detect_images`) must learn the same way, or
a quality comparison between them measures two recipes instead of two algorithms. Each caller hands it a
batch source; the loop owns the optimizer, the schedule, the loss and the per-epoch statistics.

The learning rate follows one schedule over a whole job: a FedAvg round passes where its steps sit in the
job's total (``first_step``/``total_steps``), so the cosine decays across rounds instead of restarting each
round. FedProx's proximal term is added to the gradient as ``mu * (w - w_round_start)``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

DEFAULT_HYP = {"box": 7.5, "cls": 0.5, "dfl": 1.5}
WEIGHT_DECAY = 5e-4
MAX_GRAD_NORM = 10.0

#: What a batch source yields: the model input, ultralytics' target dict (batch_idx, cls, bboxes), image count.
Batch = tuple[torch.Tensor, dict[str, torch.Tensor], int]


def detection_loss(full_model: nn.Module) -> Callable:
    """ultralytics' detection loss (``v8DetectionLoss``) bound to the model's head and default gains.

    Build it after the model has moved to its device: the loss keeps the device it finds."""
    from types import SimpleNamespace

    from ultralytics.utils.loss import v8DetectionLoss

    if not hasattr(full_model, "args") or not hasattr(full_model.args, "box"):
        full_model.args = SimpleNamespace(**DEFAULT_HYP)
    return v8DetectionLoss(full_model)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 1% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def warmup_steps(total: int) -> int:
    """A tenth of the job's steps, at most 100."""
    return min(max(1, total // 10), 100)


def make_optimizer(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """AdamW with weight decay on weights only (not on biases and batch-norm parameters)."""
    decay = [p for p in params if p.ndim > 1]
    other = [p for p in params if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                              {"params": other, "weight_decay": 0.0}], lr=lr)


def train_detection(
    module: nn.Module, criterion: Callable, epoch_batches: Callable[[int], Iterable[Batch]], *, epochs: int,
    lr: float, steps_per_epoch: int, first_step: int = 0, total_steps: int | None = None, mu: float = 0.0,
    cancel: threading.Event | None = None, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``module`` in place; ``epoch_batches(epoch)`` yields that epoch's batches (reshuffled by the caller).

    ``module``'s outputs are what ``criterion`` reads (the whole detector, or the cloud part whose last module
    is the head). Batches are moved to ``module``'s device. Returns per-epoch statistics; a set ``cancel``
    stops between batches and marks the last entry ``cancelled``.
    """
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs and steps per epoch must be >= 1, got {epochs} and {steps_per_epoch}")
    device = next(module.parameters()).device
    total = total_steps if total_steps is not None else epochs * steps_per_epoch
    warmup = warmup_steps(total)
    params = [p for p in module.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params] if mu > 0 else None
    opt = make_optimizer(params, lr)
    history: list[dict[str, Any]] = []
    step = first_step
    for epoch in range(1, epochs + 1):
        module.train()
        t0 = time.perf_counter()
        sums = torch.zeros(3, dtype=torch.float64)
        seen = 0
        for x, targets, count in epoch_batches(epoch):
            if cancel is not None and cancel.is_set():
                history.append({"cancelled": 1.0})
                return history
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, lr, warmup)
            loss, items = criterion(module(x.to(device)), {k: v.to(device) for k, v in targets.items()})
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            if anchor is not None:
                with torch.no_grad():
                    drift = torch._foreach_sub([p.detach() for p in params], anchor)
                    torch._foreach_add_([p.grad for p in params], drift, alpha=mu)
            torch.nn.utils.clip_grad_norm_(params, max_norm=MAX_GRAD_NORM)
            opt.step()
            step += 1
            values = torch.stack(list(items.values())) if isinstance(items, dict) else items
            sums += values.detach().double().cpu() * count
            seen += count
        mean = (sums / max(1, seen)).tolist()
        stats = {"loss": float(sum(mean)), "box_loss": mean[0], "cls_loss": mean[1], "dfl_loss": mean[2],
                 "seconds": time.perf_counter() - t0, "lr": opt.param_groups[0]["lr"]}
        history.append(stats)
        if on_epoch is not None:
            on_epoch(epoch, stats)
    module.eval()
    return history
