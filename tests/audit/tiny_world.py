"""A tiny in-memory MistNet world for the audit's unit tests: LeNet-5 cut at 3, random 28x28 images."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedmist.models.registry import build_model
from fedmist.models.split import split_model


def tiny_parts(seed: int = 0) -> tuple[nn.Sequential, nn.Sequential]:
    torch.manual_seed(seed)
    edge, cloud = split_model(build_model("lenet5"), 3)
    return edge.eval(), cloud


def tiny_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)
