"""A narrower cut: fewer features per sample ``r`` through a 1x1 bottleneck trained on public data.

Fewer bits per image means a smaller per-sample budget ``r * eps`` and a smaller capacity bound, at the
same per-feature epsilon. The edge gets a 1x1 convolution ``C -> c`` after its last layer (its bits are
the signs of that), the cloud a 1x1 convolution ``c -> C`` + ReLU in front of its first layer. Both, and
the layers around them, are trained on the public split through the bit channel (channel-aware, as
:mod:`fedmist.models.pretrain` does), starting from the job's pretrained weights; no edge data is used.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedmist.data.tensors import images_to_tensor
from fedmist.models.optim import OneCycleSGD
from fedmist.models.pretrain import BitChannel
from fedmist.models.split import drop_trailing_relus


def narrow_cut(
    edge: nn.Sequential,
    cloud: nn.Sequential,
    channels: int,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    channel_epsilon: float = 1.0,
    epochs: int = 3,
    batch_size: int = 64,
    max_lr: float = 0.05,
    seed: int = 0,
) -> tuple[nn.Sequential, nn.Sequential]:
    """Return ``(edge', cloud')`` with a ``channels``-wide bottleneck at the cut, trained on ``images``."""
    edge, cloud = copy.deepcopy(edge), copy.deepcopy(cloud)  # the job's own parts stay as they are
    probe = edge.eval()(torch.zeros(2, 1, *images.shape[1:]))
    if probe.dim() != 4:
        raise ValueError(f"a 1x1 bottleneck needs spatial features (C, H, W) at the cut, got {tuple(probe.shape[1:])}")
    wide = probe.shape[1]
    if not 1 <= channels < wide:
        raise ValueError(f"narrow channels must be in 1..{wide - 1} (the cut has {wide}), got {channels}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        squeeze, expand = nn.Conv2d(wide, channels, 1), nn.Conv2d(channels, wide, 1)
        new_edge = nn.Sequential(*[m for m in edge], squeeze)
        new_cloud = nn.Sequential(expand, nn.ReLU(), *[m for m in cloud])
        train_net = nn.Sequential(*drop_trailing_relus(nn.Sequential(*edge)), nn.ReLU(), squeeze,
                                  BitChannel(channel_epsilon), new_cloud)
        _fit(train_net, images_to_tensor(images), torch.as_tensor(np.asarray(labels), dtype=torch.int64),
             epochs, batch_size, max_lr, seed)
    return new_edge.eval(), new_cloud


def _fit(net: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, epochs: int, batch_size: int, max_lr: float,
         seed: int) -> None:
    n = len(y_all)
    opt = OneCycleSGD(net.parameters(), max_lr=max_lr, total_steps=epochs * math.ceil(n / batch_size),
                      weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(net(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
