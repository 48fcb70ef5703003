"""The MistNet bit channel: binarize, randomized response, bit packing and debiasing (DESIGN 5.3-5.6).

Every edge and the cloud go through these functions, so the encoding conventions live in one place:

* a feature bit is ``1[a > 0]`` of the activation at the cut;
* randomized response keeps each bit with probability ``p = e^eps / (1 + e^eps)`` and flips it otherwise;
  ``eps = inf`` keeps every bit (no privacy, stated explicitly);
* bits are packed 8 per byte with **little** bit order (``np.packbits(..., bitorder="little")``): bit ``j`` of
  a sample lands in byte ``j // 8`` at bit position ``j % 8`` (value ``1 << (j % 8)``). The last byte is
  zero-padded when ``r`` is not a multiple of 8.
"""

from __future__ import annotations

import math

import numpy as np
import torch

BIT_ORDER = "little"


def _check_eps(eps: float) -> float:
    """Reject NaN and negative budgets early: they would silently produce meaningless probabilities."""
    eps = float(eps)
    if math.isnan(eps) or eps < 0:
        raise ValueError(f"epsilon must be a number >= 0 or inf, got {eps!r}")
    return eps


def keep_probability(eps: float) -> float:
    """Probability ``e^eps / (1 + e^eps)`` that randomized response keeps a bit.

    Computed as the logistic ``1 / (1 + e^-eps)`` so that large budgets (eps = 100, 1000) do not overflow;
    ``inf`` gives exactly 1.0.
    """
    eps = _check_eps(eps)
    if math.isinf(eps):
        return 1.0
    return 1.0 / (1.0 + math.exp(-eps))


def binarize(a: torch.Tensor) -> torch.Tensor:
    """Bits ``a > 0`` (bool): after a ReLU this is "the unit fired", the only information sent."""
    return a > 0


def randomized_response(
    bits: torch.Tensor, eps: float, generator: torch.Generator | np.random.Generator | None = None
) -> torch.Tensor:
    """Keep each bit with probability ``keep_probability(eps)``, flip it otherwise (eps-LDP per bit).

    ``generator`` makes the noise reproducible in tests and benchmarks; ``None`` uses torch's global RNG.
    A numpy ``Generator`` (what the edges use) draws the same float32 uniforms, 4x faster than torch's
    Mersenne Twister here: 0.08 s instead of 0.31 s for the 29.4 M features of 25k LeNet-5 images.
    """
    p = keep_probability(eps)
    bits = bits.to(torch.bool)
    if p >= 1.0:
        return bits.clone()
    if isinstance(generator, np.random.Generator):
        uniform = torch.from_numpy(generator.random(tuple(bits.shape), dtype=np.float32))
    else:
        uniform = torch.rand(bits.shape, generator=generator, device=bits.device)
    return bits ^ (uniform < (1.0 - p))


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack bits ``(N, r)`` (bool or 0/1 uint8) into ``(N, ceil(r / 8))`` uint8, little bit order."""
    arr = np.asarray(bits)
    if arr.ndim != 2:
        raise ValueError(f"pack_bits expects a 2-D (N, r) array, got shape {arr.shape}")
    return np.packbits(arr.astype(bool, copy=False), axis=1, bitorder=BIT_ORDER)


def unpack_bits(packed: np.ndarray, r: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``(N, nbytes)`` uint8 -> ``(N, r)`` uint8 of 0/1."""
    arr = np.asarray(packed)
    _check_packed_shape(arr.shape, arr.dtype == np.uint8, r)
    return np.unpackbits(arr, axis=1, count=r, bitorder=BIT_ORDER)


def _check_packed_shape(shape: tuple[int, ...], is_uint8: bool, r: int) -> None:
    """A wrong width means features from a different cut or model: fail loudly instead of misreading."""
    if not is_uint8 or len(shape) != 2:
        raise ValueError(f"packed bits must be a 2-D uint8 array, got shape {tuple(shape)}")
    if shape[1] != (r + 7) // 8:
        raise ValueError(f"packed bits have {shape[1]} bytes per sample, expected {(r + 7) // 8} for r={r}")


def bit_lookup_table(zero: float = 0.0, one: float = 1.0) -> torch.Tensor:
    """``(256, 8)`` float32 table: row ``v`` holds the 8 bits of byte ``v`` (little order) as ``zero``/``one``.

    Decoding through a table turns unpacking *and* any affine map of the bits (debiasing) into a single
    gather, the cheapest way to feed a training step.
    """
    bits = (torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1
    return (zero + (one - zero) * bits.to(torch.float64)).to(torch.float32)


def unpack_with_table(packed: torch.Tensor, r: int, table: torch.Tensor) -> torch.Tensor:
    """Unpack ``(B, nbytes)`` uint8 to ``(B, r)`` float32 values looked up in a :func:`bit_lookup_table`."""
    _check_packed_shape(tuple(packed.shape), packed.dtype == torch.uint8, r)
    flat = table.index_select(0, packed.reshape(-1).to(torch.int64))
    return flat.view(packed.shape[0], -1)[:, :r]


def unpack_bits_torch(packed: torch.Tensor, r: int) -> torch.Tensor:
    """Unpack ``(B, nbytes)`` uint8 into ``(B, r)`` float32 0/1 in torch (one batch at a time for training)."""
    return unpack_with_table(packed, r, bit_lookup_table(0.0, 1.0))


def debias(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Map received bits ``z`` to ``(z - q) / (p - q)``, an unbiased estimate of the clean bit.

    ``E[z] = q + (p - q) b``, so the result has expectation ``b``: the cloud sees inputs on the same scale
    as the clean bits the pretrained cloud layers know. Identity at eps = inf; undefined at eps = 0
    (the channel carries no information), which raises.
    """
    p = keep_probability(eps)
    if p >= 1.0:
        return z
    q = 1.0 - p
    if p - q <= 0.0:
        raise ValueError("cannot debias at epsilon = 0: the channel carries no information")
    return (z - q) / (p - q)


def label_keep_probability(k: int, eps: float) -> float:
    """k-ary randomized response keep probability ``e^eps / (e^eps + k - 1)``, overflow-safe."""
    eps = _check_eps(eps)
    if k < 2:
        raise ValueError(f"label randomized response needs k >= 2 classes, got {k}")
    if math.isinf(eps):
        return 1.0
    return 1.0 / (1.0 + (k - 1) * math.exp(-eps))


def label_randomized_response(
    labels: torch.Tensor, k: int, eps: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keep each label w.p. ``e^eps / (e^eps + k - 1)``, else replace it by one of the other k-1 uniformly."""
    p = label_keep_probability(k, eps)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k}), got range [{int(labels.min())}, {int(labels.max())}]")
    if p >= 1.0:
        return labels.clone()
    change = torch.rand(labels.shape, generator=generator) >= p
    offset = torch.randint(1, k, labels.shape, generator=generator)
    return torch.where(change, (labels + offset) % k, labels)
