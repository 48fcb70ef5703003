"""The bit channel: probabilities, flip statistics, packing layout and debiasing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedmist.privacy.channel import (
    binarize,
    bit_lookup_table,
    debias,
    keep_probability,
    label_keep_probability,
    label_randomized_response,
    pack_bits,
    randomized_response,
    unpack_bits,
    unpack_bits_torch,
    unpack_with_table,
)


def test_keep_probability_values_and_stability() -> None:
    assert keep_probability(0) == 0.5
    assert keep_probability(1.0) == pytest.approx(math.e / (1 + math.e), rel=1e-15)
    assert keep_probability(2.0) == pytest.approx(math.exp(2) / (1 + math.exp(2)), rel=1e-15)
    assert keep_probability(100.0) == pytest.approx(1.0) and keep_probability(100.0) <= 1.0
    assert keep_probability(1e6) == 1.0  # no OverflowError from e^eps
    assert keep_probability(float("inf")) == 1.0


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_keep_probability_rejects_bad_epsilon(bad: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        keep_probability(bad)


@pytest.mark.parametrize("numpy_rng", [False, True], ids=["torch-generator", "numpy-generator"])
@pytest.mark.parametrize("eps", [0.5, 1.0, 2.0])
def test_flip_rate_within_three_sigma(eps: float, numpy_rng: bool) -> None:
    n = 400_000
    gen = torch.Generator().manual_seed(1234)
    bits = torch.rand(n, generator=gen) < 0.3
    out = randomized_response(bits, eps, np.random.default_rng(1234) if numpy_rng else gen)
    flips = int((out ^ bits).sum())
    p = keep_probability(eps)
    # flips ~ Binomial(n, 1 - p): mean n (1 - p), sigma sqrt(n p (1 - p))
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(flips - n * (1 - p)) < 3 * sigma


def test_infinite_epsilon_keeps_every_bit() -> None:
    bits = torch.rand(10_000) < 0.5
    assert torch.equal(randomized_response(bits, float("inf")), bits)


def test_binarize_is_strictly_positive() -> None:
    assert binarize(torch.tensor([-1.0, 0.0, 1e-7, 3.0])).tolist() == [False, False, True, True]


@pytest.mark.parametrize("r", [1, 7, 8, 13, 1176])
def test_pack_unpack_round_trip(r: int) -> None:
    bits = np.random.default_rng(r).integers(0, 2, size=(5, r), dtype=np.uint8)
    packed = pack_bits(bits)
    assert packed.dtype == np.uint8 and packed.shape == (5, math.ceil(r / 8))
    assert np.array_equal(unpack_bits(packed, r), bits)
    assert np.array_equal(pack_bits(bits.astype(bool)), packed)


def test_pack_uses_little_bit_order() -> None:
    bits = np.zeros((1, 10), dtype=bool)
    bits[0, [0, 9]] = True  # bit 0 -> byte 0 value 1; bit 9 -> byte 1 value 2
    assert pack_bits(bits).tolist() == [[1, 2]]


@pytest.mark.parametrize("r", [5, 16, 1176])
def test_unpack_bits_torch_equals_numpy(r: int) -> None:
    packed = np.random.default_rng(0).integers(0, 256, size=(9, math.ceil(r / 8)), dtype=np.uint8)
    ours = unpack_bits_torch(torch.from_numpy(packed), r)
    assert ours.dtype == torch.float32 and ours.shape == (9, r)
    assert np.array_equal(ours.numpy(), unpack_bits(packed, r).astype(np.float32))


def test_unpack_with_table_applies_values() -> None:
    packed = torch.tensor([[0b101]], dtype=torch.uint8)
    assert unpack_with_table(packed, 3, bit_lookup_table(-1.0, 2.0)).tolist() == [[2.0, -1.0, 2.0]]


def test_unpack_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match="expected 147 for r=1176"):
        unpack_bits(np.zeros((2, 146), dtype=np.uint8), 1176)


def test_debias_is_unbiased_and_identity_at_inf() -> None:
    gen = torch.Generator().manual_seed(0)
    eps = 1.0
    ones = torch.ones(200_000, dtype=torch.bool)
    zeros = torch.zeros(200_000, dtype=torch.bool)
    assert float(debias(randomized_response(ones, eps, gen).float(), eps).mean()) == pytest.approx(1.0, abs=0.02)
    assert float(debias(randomized_response(zeros, eps, gen).float(), eps).mean()) == pytest.approx(0.0, abs=0.02)
    z = torch.tensor([0.0, 1.0])
    assert torch.equal(debias(z, float("inf")), z)
    p = keep_probability(eps)
    assert debias(z, eps).tolist() == pytest.approx([-(1 - p) / (2 * p - 1), p / (2 * p - 1)])
    with pytest.raises(ValueError, match="epsilon = 0"):
        debias(z, 0.0)


def test_label_randomized_response_rates() -> None:
    n, k, eps = 200_000, 10, 2.0
    gen = torch.Generator().manual_seed(7)
    labels = torch.randint(0, k, (n,), generator=gen)
    out = label_randomized_response(labels, k, eps, gen)
    p = math.exp(eps) / (math.exp(eps) + k - 1)
    assert label_keep_probability(k, eps) == pytest.approx(p)
    kept = int((out == labels).sum())
    assert abs(kept - n * p) < 3 * math.sqrt(n * p * (1 - p))
    assert int(out.min()) >= 0 and int(out.max()) < k
    assert torch.equal(label_randomized_response(labels, k, float("inf")), labels)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        label_randomized_response(torch.tensor([10]), k, eps)
