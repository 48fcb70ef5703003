"""The edge's keyed, coupled noise (fedmist.privacy.noise): exact randomized response at one epsilon, the same
bits for the same data, fresh noise for changed data, and two releases of the same data that reveal no more
than the larger-epsilon one."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from fedmist.privacy.channel import keep_probability, label_keep_probability
from fedmist.privacy.noise import (
    CoupledNoise,
    data_fingerprint,
    files_fingerprint,
    noise_key,
    randomized_bits,
    randomized_labels,
    replacement_time,
)

SECRET = 0x1234_5678_9ABC_DEF0


@pytest.fixture(scope="module")
def bits() -> np.ndarray:
    return np.random.default_rng(0).random((800, 500)) < 0.4


def _noise(data: str = "d", features: str = "f", secret: int = SECRET) -> CoupledNoise:
    return CoupledNoise(noise_key(secret, data, features, "features"))


def _within(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_one_release_is_randomized_response_at_its_epsilon(bits) -> None:
    for eps in (0.5, 2.0, 6.0):
        noisy = _noise().apply(bits, eps, 0)
        assert noisy.dtype == np.bool_ and noisy.shape == bits.shape
        assert _within(int((noisy != bits).sum()), bits.size, 1 - keep_probability(eps)), eps
    assert np.array_equal(_noise().apply(bits, math.inf, 0), bits)
    assert replacement_time(math.inf, 2) == 0.0 and replacement_time(0.0, 2) == math.inf
    assert math.exp(-replacement_time(2.0, 2)) == pytest.approx(math.tanh(1.0))


def test_same_data_same_bits_whatever_the_batching(bits) -> None:
    whole = _noise().apply(bits, 2.0, 0)
    parts = np.concatenate([_noise().apply(bits[s:s + 300], 2.0, s) for s in range(0, len(bits), 300)])
    assert np.array_equal(whole, parts)  # a resumed upload reproduces what was sent
    again = randomized_bits(_noise(), torch.from_numpy(bits), 2.0, 0).numpy()
    assert np.array_equal(again, whole)


def test_the_stream_is_pinned_across_versions(bits) -> None:
    """An edge upgraded mid-upload must reproduce the bits it sent before (the aggregator checks the whole
    upload's hash): any change to the stream's definition, or to how apply() blocks its work, fails here."""
    out = _noise().apply(bits, 2.0, 0)
    digest = hashlib.sha256(np.packbits(out).tobytes()).hexdigest()
    assert digest == "6fb3c894e58faa472ec3fc903d18dcd7443e42ff02e11002bad60276b898e3e1"


def test_changed_data_or_another_secret_gets_fresh_noise(bits) -> None:
    images = np.random.default_rng(1).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = np.arange(50) % 10
    base = data_fingerprint(images, labels)
    changed = images.copy()
    changed[7, 3, 3] ^= 1
    relabelled = labels.copy()
    relabelled[0] = 9
    order = np.r_[1, 0, 2:50]
    others = {data_fingerprint(changed, labels), data_fingerprint(images[order], labels[order]),
              data_fingerprint(images, relabelled), data_fingerprint(images[:49], labels[:49])}
    assert base == data_fingerprint(images.copy(), labels.copy()) == data_fingerprint(torch.from_numpy(images), labels)
    assert base not in others and len(others) == 4

    first = _noise(base).apply(bits, 2.0, 0)
    for other in (_noise(data_fingerprint(changed, labels)), _noise(base, features="another edge model"),
                  _noise(base, secret=SECRET + 1)):
        fresh = other.apply(bits, 2.0, 0)
        # independent noise: the two releases disagree where exactly one of them flipped (2 q (1 - q))
        q = 1 - keep_probability(2.0)
        assert _within(int((fresh != first).sum()), bits.size, 2 * q * (1 - q))


def test_files_fingerprint_follows_content_and_order(tmp_path) -> None:
    a, b, la = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "a.txt"
    a.write_bytes(b"AA")
    b.write_bytes(b"BB")
    pairs = [(a, la), (b, tmp_path / "b.txt")]
    base = files_fingerprint(pairs)
    assert files_fingerprint(pairs[::-1]) != base
    la.write_text("0 0.5 0.5 0.1 0.1\n")
    assert files_fingerprint(pairs) != base


def test_two_epsilons_nested_events_and_the_pair_reveals_no_more_than_the_larger(bits) -> None:
    """Releases at eps_a = 3 and eps_b = 1 of the same data. The naive coupling (flip where u < q) would make
    any disagreement reveal the clean bit; here, given the eps_a release, the eps_b release is independent of
    the clean bit: among bits released as v at eps_a, the share released as 1 - v at eps_b is the same
    whether the clean bit was 0 or 1, and equals the extra flip probability (1 - tanh(1/2) / tanh(3/2)) / 2."""
    noise = _noise()
    high, low = noise.apply(bits, 3.0, 0), noise.apply(bits, 1.0, 0)
    extra = (1 - math.tanh(0.5) / math.tanh(1.5)) / 2
    for released in (False, True):
        for clean in (False, True):
            cell = (high == released) & (bits == clean)
            assert _within(int((low[cell] != released).sum()), int(cell.sum()), extra), (released, clean)
    # disagreement does not certify the larger-eps bit: it is wrong there about as often as elsewhere
    disagree = high != low
    assert _within(int((high[disagree] != bits[disagree]).sum()), int(disagree.sum()), 1 - keep_probability(3.0),
                   sigmas=5.0)
    # nested replacement events: the two releases share their early events, so they are positively correlated
    same_at_low = low == bits
    assert (high[same_at_low] == bits[same_at_low]).mean() > (high == bits).mean()


def test_labels_k_ary_randomized_response_coupled() -> None:
    labels = np.random.default_rng(3).integers(0, 10, 60_000)
    noise = CoupledNoise(noise_key(SECRET, "d", "", "labels"), k=10)
    sent = randomized_labels(noise, labels, 1.0)
    assert _within(int((sent == labels).sum()), labels.size, label_keep_probability(10, 1.0))
    moved = (sent - labels)[sent != labels] % 10
    assert set(np.unique(moved)) == set(range(1, 10))  # to the other classes, uniformly
    counts = np.bincount(moved, minlength=10)[1:]
    assert counts.max() - counts.min() < 8 * math.sqrt(counts.mean())
    assert np.array_equal(randomized_labels(noise, labels, 1.0), sent)
    assert np.array_equal(randomized_labels(noise, labels, math.inf), labels)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        randomized_labels(noise, np.array([3, 10]), 1.0)
