"""Pretraining the MistNet model on the public split, optionally through the bit channel.

Plain pretraining learns real-valued features; the edges then send only ``1[a > 0]`` with random flips,
which the layers after the cut never saw. *Channel-aware* pretraining (``cut_layer`` given) runs the same
channel inside the forward pass — binarize, randomized response at ``channel_epsilon``, the cloud's
debiasing — with a straight-through estimator for the gradient, so the edge learns features that survive
binarization and noise, and the cloud layers start from weights that already read bits. Using the public
split for this is legitimate: it is public data, and no edge data is involved.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedmist.data.tensors import model_input
from fedmist.models.optim import OneCycleSGD
from fedmist.models.parts import build_job_model, split_parts
from fedmist.models.split import drop_trailing_relus, resolve_cut
from fedmist.privacy.channel import debias as debias_bits
from fedmist.privacy.channel import keep_probability


class BitChannel(nn.Module):
    """Training-time stand-in for the edge->cloud channel with a surrogate gradient.

    Forward: ``b = 1[s > 0]``, each bit flipped with probability ``1 - p``, optionally debiased — exactly
    what the cloud will receive. Backward: the gradient of ``sigmoid(s / temperature)`` (scaled like the
    debiasing), a smooth straight-through estimator. Unlike the identity estimator it fades away from
    the threshold, so weights cannot grow without bound to push every unit on.
    """

    def __init__(self, epsilon: float, debias: bool = True, temperature: float = 0.25) -> None:
        super().__init__()
        self.epsilon = float(epsilon)
        self.debias = debias
        self.temperature = float(temperature)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        bits = (s > 0).to(s.dtype)
        p = keep_probability(self.epsilon)
        if p < 1.0:
            flip = (torch.rand_like(s) < (1.0 - p)).to(s.dtype)
            bits = bits + flip * (1.0 - 2.0 * bits)
        scale = 1.0 / (2.0 * p - 1.0) if self.debias and p < 1.0 else 1.0
        z = debias_bits(bits, self.epsilon) if self.debias else bits
        soft = torch.sigmoid(s / self.temperature) * scale
        return z.detach() + (soft - soft.detach())


def _default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def pretrain(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    *,
    model: str = "lenet5",
    epochs: int = 5,
    batch_size: int = 64,
    max_lr: float = 0.05,
    weight_decay: float = 5e-4,
    seed: int = 0,
    cut_layer: int | str | None = None,
    channel_epsilon: float = math.inf,
    debias: bool = True,
    temperature: float = 0.25,
    threads: int | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Train ``model`` on uint8 images ``(N, H, W)`` (or a user loader's input tensors) and labels; return its
    state dict. ``model`` is a built-in name or a factory's import path; a user model is cut for the channel
    by the split protocol of :mod:`fedmist.models.parts`.

    SGD with momentum and weight decay under a one-cycle schedule (:mod:`fedmist.models.optim`). With
    ``cut_layer`` the forward pass goes through :class:`BitChannel` at the cut (noise at ``channel_epsilon``; ``inf`` =
    binarize only; the job's epsilon works best: measured +1.4 points at eps 1 over plain pretraining,
    see bench/mistnet_accuracy.py). ``temperature`` shapes the surrogate gradient. ``threads`` sets
    torch's intra-op threads for the process (default: all cores available to it).
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need matching, non-empty images and labels, got {len(images)} and {len(labels)}")
    torch.set_num_threads(threads or _default_threads())
    with torch.random.fork_rng(devices=[]):  # seeded init and channel noise without touching the caller's RNG
        torch.manual_seed(seed)
        net = build_job_model(model)
        forward = net if cut_layer is None else _through_channel(net, cut_layer, BitChannel(channel_epsilon, debias,
                                                                                             temperature))
        y_all = torch.from_numpy(np.asarray(labels).astype(np.int64))
        _fit(forward, model_input(images), y_all, epochs=epochs, batch_size=batch_size, max_lr=max_lr,
             weight_decay=weight_decay, seed=seed, on_epoch=on_epoch)
    net.eval()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _through_channel(net: nn.Module, cut_layer: int | str, channel: BitChannel) -> nn.Sequential:
    """``net`` with the bit channel inserted at the cut; shares its modules, so training it trains ``net``."""
    if not isinstance(net, nn.Sequential):  # a user model: its parts by the split protocol (views of its modules)
        parts = split_parts(net, cut_layer, type(net).__name__)
        edge = drop_trailing_relus(parts.edge) if isinstance(parts.edge, nn.Sequential) else parts.edge
        return nn.Sequential(edge, channel, parts.cloud)
    cut = resolve_cut(net, cut_layer)
    return nn.Sequential(drop_trailing_relus(net[:cut]), channel, net[cut:])


def _fit(
    forward: nn.Module,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    max_lr: float,
    weight_decay: float,
    seed: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
) -> None:
    """Plain supervised epochs over in-memory tensors (the public split is small)."""
    n = len(y_all)
    steps_per_epoch = math.ceil(n / batch_size)
    opt = OneCycleSGD(forward.parameters(), max_lr=max_lr, total_steps=epochs * steps_per_epoch,
                      weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    forward.train()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x, y = x_all[idx], y_all[idx]
            logits = forward(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
        if on_epoch is not None:
            on_epoch(epoch, {"loss": loss_sum / n, "accuracy": correct / n, "seconds": time.perf_counter() - t0})
