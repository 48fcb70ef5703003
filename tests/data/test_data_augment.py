"""Feature-map augmentations keep shapes and values, and are looked up by name."""

from __future__ import annotations

import pytest
import torch

from fedmist.data.augment import random_hflip, random_shift, resolve_augmentation


def test_flip_mirrors_some_samples_exactly() -> None:
    x = torch.rand(64, 6, 14, 14)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = [bool(torch.equal(out[i], x[i].flip(-1))) for i in range(64)]
    kept = [bool(torch.equal(out[i], x[i])) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54


def test_shift_moves_maps_by_at_most_one_cell() -> None:
    x = torch.zeros(32, 2, 5, 5)
    x[:, :, 2, 2] = 1.0
    out = random_shift(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out.sum(dim=(2, 3)), x.sum(dim=(2, 3)))
    rows, cols = torch.nonzero(out[:, 0], as_tuple=True)[1:]
    assert set(rows.tolist()) <= {1, 2, 3} and set(cols.tolist()) <= {1, 2, 3}
    assert torch.equal(out[:, 0], out[:, 1])  # channels move together


def test_registry() -> None:
    assert resolve_augmentation("none") is None and resolve_augmentation(None) is None
    assert resolve_augmentation("flip") is random_hflip
    with pytest.raises(ValueError, match="unknown feature augmentation 'rotate'"):
        resolve_augmentation("rotate")
