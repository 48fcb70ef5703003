"""The edge channel as the attacker meets it: victims' uploads, and fresh channel noise for training attacks.

Victims' uploads come from :func:`fedmist.models.extract.extract_bits`, the very code an edge runs
(binarize + randomized response + packing). The attacker's auxiliary data goes through the same
:func:`fedmist.privacy.channel.randomized_response` with fresh randomness at every training step, so a
decoder learns the channel's noise distribution rather than one fixed draw of it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedmist.data.tensors import images_to_tensor
from fedmist.models.extract import channel_features, extract_bits, feature_shape_of
from fedmist.privacy.channel import randomized_response, unpack_bits


def feature_shape(edge: nn.Module, images: np.ndarray) -> tuple[int, ...]:
    return tuple(int(d) for d in feature_shape_of(edge, tuple(images.shape[1:])))


def uploads(edge: nn.Module, images: np.ndarray, eps: float, seed: int) -> torch.Tensor:
    """What the edges upload for ``images`` at ``eps``, unpacked to bool ``(N, r)``."""
    packed, shape = extract_bits(edge, images, eps, seed=seed)
    return torch.from_numpy(unpack_bits(packed, int(np.prod(shape))).astype(bool))


def clean_bits(edge: nn.Module, images: np.ndarray) -> torch.Tensor:
    """Binarized, unflipped features bool ``(N, r)`` (the evaluation channel, DESIGN 5.7)."""
    shape = feature_shape(edge, images)
    return torch.from_numpy(unpack_bits(channel_features(edge, images), int(np.prod(shape))).astype(bool))


def float_features(edge: nn.Module, images: np.ndarray, batch_size: int = 1000) -> torch.Tensor:
    """The real-valued edge activations ``(N, r)`` (the raw-feature baseline: no binarization, no noise)."""
    out = []
    edge.eval()
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            out.append(edge(images_to_tensor(images[start : start + batch_size])).flatten(1))
    return torch.cat(out)


class FreshNoise:
    """Randomized response on stored clean bits with a new draw per call: the channel, sampled per step."""

    def __init__(self, eps: float, seed: int) -> None:
        self.eps = float(eps)
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, bits: torch.Tensor) -> torch.Tensor:
        return randomized_response(bits, self.eps, self.gen)
