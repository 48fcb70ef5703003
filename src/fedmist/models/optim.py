"""SGD with momentum under a one-cycle schedule, as plain tensor updates.

Numerically the same as ``torch.optim.SGD(momentum=..., weight_decay=...)`` driven by
``torch.optim.lr_scheduler.OneCycleLR`` with its defaults (cosine annealing, 30 % warm-up, lr from
``max_lr / 25`` up to ``max_lr`` and down to ``max_lr / 25e4``, momentum cycled 0.95 -> 0.85 -> 0.95).
Why not use those classes: the first ``torch.optim`` optimizer in a process imports ``torch._dynamo``
(measured 1.5-3.5 s on the 2-core machine) and each ``step()`` goes through hook and profiling wrappers;
the MistNet cloud trains ~8k small steps in a ~10 s budget, where both costs show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

PCT_START = 0.3
DIV_FACTOR = 25.0
FINAL_DIV_FACTOR = 1e4
BASE_MOMENTUM = 0.85
MAX_MOMENTUM = 0.95


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def one_cycle(step: int, total_steps: int, max_lr: float) -> tuple[float, float]:
    """``(lr, momentum)`` for 0-based optimizer step ``step`` of ``total_steps`` (OneCycleLR's formula)."""
    if total_steps < 2:
        return max_lr / DIV_FACTOR, MAX_MOMENTUM
    initial = max_lr / DIV_FACTOR
    warm_end = float(PCT_START * total_steps) - 1.0
    if step <= warm_end:
        pct = step / warm_end if warm_end > 0 else 1.0
        return _cos_anneal(initial, max_lr, pct), _cos_anneal(MAX_MOMENTUM, BASE_MOMENTUM, pct)
    pct = (step - warm_end) / (total_steps - 1 - warm_end)
    return _cos_anneal(max_lr, initial / FINAL_DIV_FACTOR, pct), _cos_anneal(BASE_MOMENTUM, MAX_MOMENTUM, pct)


class MomentumSGD:
    """``p -= lr * buf`` with ``buf = momentum * buf + (grad + weight_decay * p)``, batched with foreach ops."""

    def __init__(self, params: Iterable[torch.nn.Parameter], weight_decay: float = 0.0) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.weight_decay = float(weight_decay)
        self.buffers: list[torch.Tensor] | None = None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float, momentum: float) -> None:
        live = [p for p in self.params if p.grad is not None]
        if len(live) != len(self.params):
            raise RuntimeError("some parameters received no gradient; MomentumSGD expects a full backward pass")
        grads = [p.grad for p in live]
        if self.weight_decay:
            grads = torch._foreach_add(grads, live, alpha=self.weight_decay)
        if self.buffers is None:
            self.buffers = [g.clone() for g in grads]  # torch.optim.SGD starts its momentum buffer at the gradient
        else:
            torch._foreach_mul_(self.buffers, momentum)
            torch._foreach_add_(self.buffers, grads)
        torch._foreach_add_(live, self.buffers, alpha=-lr)


class OneCycleSGD:
    """The optimizer + schedule pair used for pretraining and cloud training: call :meth:`step` after backward."""

    def __init__(self, params: Iterable[torch.nn.Parameter], *, max_lr: float, total_steps: int,
                 weight_decay: float = 0.0) -> None:
        self.sgd = MomentumSGD(params, weight_decay)
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.steps_done = 0

    @property
    def lr(self) -> float:
        """Learning rate the next step will use (after the last step: the schedule's final value)."""
        return one_cycle(min(self.steps_done, self.total_steps - 1), self.total_steps, self.max_lr)[0]

    def zero_grad(self) -> None:
        self.sgd.zero_grad()

    def step(self) -> None:
        lr, momentum = one_cycle(self.steps_done, self.total_steps, self.max_lr)
        self.sgd.step(lr, momentum)
        self.steps_done += 1
