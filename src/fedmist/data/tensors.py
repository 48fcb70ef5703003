"""The one image normalisation used everywhere (pretraining, edge extraction, evaluation).

Pixels are scaled to [0, 1] by dividing by 255 — no mean/std standardisation. Keeping a single rule
matters for MistNet: the edge's pretrained first layers only produce meaningful bits when the edge feeds
them inputs on the same scale the pretraining used.
"""

from __future__ import annotations

import numpy as np
import torch


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W)`` -> float32 ``(N, 1, H, W)`` in [0, 1]."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise ValueError(f"expected uint8 images of shape (N, H, W), got {arr.dtype} {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(1).to(torch.float32).div_(255.0)


def model_input(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A batch as the model takes it: built-in uint8 ``(N, H, W)`` images are scaled by
    :func:`images_to_tensor`; a tensor from a user's loader (``format: python``) is passed on unchanged, since
    its shape, dtype and scale are whatever the user's model expects."""
    if isinstance(batch, torch.Tensor):
        return batch
    return images_to_tensor(batch)


def probe_batch(samples: np.ndarray | torch.Tensor, size: int = 2) -> torch.Tensor:
    """Zeros shaped like ``size`` model inputs of ``samples`` (for shape probes through a model part)."""
    if isinstance(samples, torch.Tensor):
        return torch.zeros((size, *samples.shape[1:]), dtype=samples.dtype)
    return torch.zeros((size, 1, *np.asarray(samples).shape[1:]), dtype=torch.float32)
