"""Public/edge/test splits: counts, disjointness, determinism, non-IID skew."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedmist.data.idx import load_idx_dataset, write_idx
from fedmist.data.split import split_dataset

N = 600


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    """A tiny MNIST-like source whose images encode their own index (so overlaps are detectable)."""
    src = tmp_path / "src"
    ids = np.arange(N)
    images = np.zeros((N, 28, 28), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1] = ids // 256, ids % 256
    write_idx(src / "train-images-idx3-ubyte.gz", images)
    write_idx(src / "train-labels-idx1-ubyte.gz", (ids % 10).astype(np.uint8))
    write_idx(src / "t10k-images-idx3-ubyte.gz", images[:50])
    write_idx(src / "t10k-labels-idx1-ubyte.gz", (ids[:50] % 10).astype(np.uint8))
    return src


def _ids(directory: Path) -> np.ndarray:
    images, _ = load_idx_dataset(directory)
    return images[:, 0, 0].astype(int) * 256 + images[:, 0, 1]


@pytest.mark.parametrize("alpha", [None, 0.3])
def test_counts_and_disjointness(source: Path, tmp_path: Path, alpha: float | None) -> None:
    out = tmp_path / "out"
    summary = split_dataset(source, out, public=100, edges=[200, 150], seed=3, alpha=alpha)
    splits = summary["splits"]
    assert {k: v["count"] for k, v in splits.items()} == {"public": 100, "edge1": 200, "edge2": 150, "test": 50}
    parts = [_ids(out / name) for name in ("public", "edge1", "edge2")]
    assert [len(p) for p in parts] == [100, 200, 150]
    union = np.concatenate(parts)
    assert len(np.unique(union)) == len(union)  # disjoint
    for name, ids in zip(("public", "edge1", "edge2"), parts):
        _, labels = load_idx_dataset(out / name)
        assert np.array_equal(labels, ids % 10)  # labels travel with their images
        assert splits[name]["label_histogram"] == np.bincount(labels, minlength=10).tolist()
    assert len(load_idx_dataset(out / "test")[0]) == 50
    assert json.loads((out / "split.json").read_text()) == summary


def test_seeded_determinism(source: Path, tmp_path: Path) -> None:
    split_dataset(source, tmp_path / "a", public=100, edges=[200], seed=1)
    split_dataset(source, tmp_path / "b", public=100, edges=[200], seed=1)
    split_dataset(source, tmp_path / "c", public=100, edges=[200], seed=2)
    assert np.array_equal(_ids(tmp_path / "a" / "edge1"), _ids(tmp_path / "b" / "edge1"))
    assert not np.array_equal(_ids(tmp_path / "a" / "edge1"), _ids(tmp_path / "c" / "edge1"))


def test_dirichlet_skews_edge_labels(source: Path, tmp_path: Path) -> None:
    summary = split_dataset(source, tmp_path / "o", public=100, edges=[200, 200], seed=0, alpha=0.1)
    hist = np.array(summary["splits"]["edge1"]["label_histogram"])
    public = np.array(summary["splits"]["public"]["label_histogram"])
    top4 = np.sort(hist)[-4:].sum() / hist.sum()
    assert top4 > 0.7  # a few classes dominate (IID: about 0.4)
    assert np.sort(public)[-4:].sum() / public.sum() < 0.6  # public stays IID


def test_too_many_samples_is_an_error(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="asked for 700 training samples.*only 600"):
        split_dataset(source, tmp_path / "o", public=100, edges=[300, 300], seed=0)
    with pytest.raises(ValueError, match="alpha"):
        split_dataset(source, tmp_path / "o", public=100, edges=[300], seed=0, alpha=0)
