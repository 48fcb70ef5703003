"""Edge extraction: shapes, batching, streaming, the noise it adds, and the clean evaluation channel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedmist.models.extract import channel_features, extract_bits, feature_shape_of, iter_extract
from fedmist.models.lenet import lenet5
from fedmist.models.split import split_model
from fedmist.privacy.channel import keep_probability, unpack_bits


@pytest.fixture(scope="module")
def edge() -> torch.nn.Sequential:
    torch.manual_seed(0)
    edge, _ = split_model(lenet5(), 3)
    return edge


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(2500, 28, 28), dtype=np.uint8)


def test_shapes_and_clean_channel(edge: torch.nn.Sequential, images: np.ndarray) -> None:
    packed, shape = extract_bits(edge, images, float("inf"), batch_size=1000)
    assert shape == (6, 14, 14) and packed.dtype == np.uint8 and packed.shape == (2500, 147)
    with torch.no_grad():
        expected = (edge(torch.from_numpy(images[:10]).float().div(255).unsqueeze(1)) > 0).flatten(1).numpy()
    assert np.array_equal(unpack_bits(packed[:10], 1176).astype(bool), expected)
    assert np.array_equal(channel_features(edge, images, batch_size=700), packed)
    assert feature_shape_of(edge) == (6, 14, 14)


def test_noise_rate_and_seeding(edge: torch.nn.Sequential, images: np.ndarray) -> None:
    clean = unpack_bits(channel_features(edge, images), 1176)
    noisy_packed, _ = extract_bits(edge, images, 1.0, seed=5)
    noisy = unpack_bits(noisy_packed, 1176)
    n, p = clean.size, keep_probability(1.0)
    flips = int((clean != noisy).sum())
    assert abs(flips - n * (1 - p)) < 3 * math.sqrt(n * p * (1 - p))
    again, _ = extract_bits(edge, images, 1.0, seed=5)
    assert np.array_equal(again, noisy_packed)
    fresh_a, _ = extract_bits(edge, images[:100], 1.0)  # seed None: OS entropy, never repeatable
    fresh_b, _ = extract_bits(edge, images[:100], 1.0)
    assert not np.array_equal(fresh_a, fresh_b)


def test_iter_extract_streams_batches(edge: torch.nn.Sequential, images: np.ndarray) -> None:
    edge.train()
    chunks = list(iter_extract(edge, images, float("inf"), batch_size=1000))
    assert [start for start, _ in chunks] == [0, 1000, 2000]
    assert [len(c) for _, c in chunks] == [1000, 1000, 500]
    assert edge.training  # mode restored after the pass
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        next(iter_extract(edge, images, 1.0, batch_size=1))


def test_fast_inference_path_matches_the_modules_exactly() -> None:
    from fedmist.models.extract import _max_pool_2x2, _run_edge

    torch.manual_seed(1)
    edge = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Conv2d(3, 2, 2), torch.nn.ReLU(), torch.nn.MaxPool2d(2, ceil_mode=True))
    x = torch.randn(5, 1, 15, 15)  # odd sizes: floor-mode pooling drops the last row/column
    with torch.no_grad():
        assert torch.equal(_run_edge(edge, x) > 0, edge(x) > 0)
        assert torch.equal(_run_edge(edge[:3], x) > 0, edge[:3](x) > 0)
        assert torch.equal(_max_pool_2x2(torch.nn.MaxPool2d(2), x), torch.nn.MaxPool2d(2)(x))  # same values
        assert _max_pool_2x2(torch.nn.MaxPool2d(3), x) is None  # other shapes use the module itself
