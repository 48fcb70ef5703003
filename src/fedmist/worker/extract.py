"""Edge side of MistNet: one batched pass over local images -> privacy-protected packed bits (DESIGN 5.2-5.4).

The edge never needs the cloud layers. Extraction runs in eval mode without gradients and in batches
(never batch size 1, whose per-call overhead dominates on small convolutions). Chunks are yielded as they
are produced so a transmitter can stream them with a bounded buffer.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from fedmist.data.tensors import images_to_tensor
from fedmist.privacy.channel import binarize, pack_bits, randomized_response


def _generator(seed: int | None) -> torch.Generator:
    """Seeded for reproducible benchmarks; otherwise from OS entropy, since predictable noise is no privacy."""
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def _check_batch(batch_size: int) -> int:
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for extraction (per-image passes are far slower), got {batch_size}")
    return int(batch_size)


def _bits_of(edge: nn.Module, images: np.ndarray) -> torch.Tensor:
    """Binarized edge output of one batch, flattened to ``(B, r)`` bool."""
    return binarize(edge(images_to_tensor(images))).flatten(1)


def feature_shape_of(edge: nn.Module, image_shape: tuple[int, ...] = (28, 28)) -> tuple[int, ...]:
    """Shape of one sample's edge output (e.g. ``(6, 14, 14)``), from a probe forward pass."""
    was_training = edge.training
    edge.eval()
    with torch.inference_mode():
        out = edge(torch.zeros((2, 1, *image_shape)))
    edge.train(was_training)
    return tuple(out.shape[1:])


def iter_extract(
    edge: nn.Module, images: np.ndarray, eps: float, batch_size: int = 1000, seed: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start_index, packed uint8 (B, nbytes))`` per batch: binarize, randomized response, pack."""
    batch_size = _check_batch(batch_size)
    gen = _generator(seed)
    was_training = edge.training
    edge.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                bits = _bits_of(edge, images[start : start + batch_size])
                noisy = randomized_response(bits, eps, gen)
                yield start, pack_bits(noisy.numpy())
    finally:
        edge.train(was_training)


def extract_bits(
    edge: nn.Module, images: np.ndarray, eps: float, batch_size: int = 1000, seed: int | None = None
) -> tuple[np.ndarray, tuple[int, ...]]:
    """All packed noisy bits ``(N, ceil(r / 8))`` and the per-sample feature shape."""
    shape = feature_shape_of(edge, tuple(images.shape[1:]))
    r = int(np.prod(shape))
    out = np.empty((len(images), (r + 7) // 8), dtype=np.uint8)
    for start, chunk in iter_extract(edge, images, eps, batch_size, seed):
        out[start : start + len(chunk)] = chunk
    return out, shape


def channel_features(edge: nn.Module, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Packed clean bits (binarize, no flipping): the channel the cloud is evaluated through (DESIGN 5.7)."""
    packed, _ = extract_bits(edge, images, float("inf"), batch_size, seed=0)
    return packed
