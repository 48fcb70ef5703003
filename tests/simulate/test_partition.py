"""Partitions of a dataset over virtual clients: exact counts, disjoint and complete, seeded, skewed as asked."""

from __future__ import annotations

import numpy as np
import pytest

from fedmist.simulate.partition import label_histograms, partition

LABELS = np.repeat(np.arange(10, dtype=np.uint8), 100)  # 1,000 samples, 100 per class


def _covers_once(parts, n: int) -> None:
    assert np.array_equal(np.sort(parts.indices), np.arange(n))  # every sample, each exactly once
    assert parts.indices.dtype == np.int32


def test_iid_sizes_differ_by_at_most_one_and_mix_labels():
    parts = partition(LABELS, 7, "iid", seed=1)
    _covers_once(parts, 1000)
    assert parts.sizes().tolist() == [143] * 6 + [142]
    assert (label_histograms(LABELS, parts, 10) > 0).all()  # 143 random samples hold every class


def test_dirichlet_sizes_are_exact_and_alpha_controls_skew():
    skewed = partition(LABELS, 10, "dirichlet", alpha=0.1, seed=2)
    even = partition(LABELS, 10, "dirichlet", alpha=100.0, seed=2)
    for parts in (skewed, even):
        _covers_once(parts, 1000)
        assert parts.sizes().tolist() == [100] * 10
    top = lambda p: (label_histograms(LABELS, p, 10).max(axis=1) / 100).mean()  # noqa: E731
    assert top(skewed) > 0.5 > top(even)  # alpha 0.1: most of a client is one class; alpha 100: about a tenth


def test_shards_give_each_client_two_labels():
    parts = partition(LABELS, 10, "shards", shards_per_client=2, seed=3)
    _covers_once(parts, 1000)
    assert parts.sizes().tolist() == [100] * 10
    assert ((label_histograms(LABELS, parts, 10) > 0).sum(axis=1) <= 2).all()


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
def test_seeded(scheme):
    a, b = partition(LABELS, 20, scheme, seed=5), partition(LABELS, 20, scheme, seed=5)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.indices, partition(LABELS, 20, scheme, seed=6).indices)


def test_ten_thousand_clients_cost_index_arrays_only():
    labels = np.tile(np.arange(10, dtype=np.uint8), 6000)
    parts = partition(labels, 10_000, "dirichlet", alpha=0.1, seed=0)
    assert parts.sizes().tolist() == [6] * 10_000
    assert parts.indices.nbytes + parts.offsets.nbytes == 60_000 * 4 + 10_001 * 8


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"clients": 0}, "clients must be >= 1"), ({"clients": 2000}, "need at least 2000 samples"),
    ({"clients": 5, "scheme": "zipf"}, "use one of iid, dirichlet, shards"),
    ({"clients": 5, "scheme": "dirichlet", "alpha": 0.0}, "alpha must be > 0"),
    ({"clients": 600, "scheme": "shards"}, "600 clients x 2 shards need at least 1200")])
def test_impossible_requests_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        partition(LABELS, **kwargs)


def test_job_partition_gives_each_trainer_exactly_its_own_dataset_in_order():
    from fedmist.simulate.partition import by_dataset

    parts = by_dataset([3, 5, 2])
    _covers_once(parts, 10)
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="non-empty dataset"):
        by_dataset([3, 0])
