"""Dataset loading by the manifest's ``format``, through a registry (no string dispatch chains).

Each loader returns ``(images uint8 (N, H, W), labels uint8/int (N,))`` for classification data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedmist.data.idx import load_idx_dataset
from fedmist.data.image_index import load_csv_dataset, load_txt_dataset

Loader = Callable[[str], tuple[np.ndarray, np.ndarray]]


def dataset_loaders() -> dict[str, Loader]:
    """Built-in loaders keyed by ``Dataset.spec.format``."""
    return {"idx": load_idx_dataset, "txt": load_txt_dataset, "csv": load_csv_dataset}


def load_dataset(url: str, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Load the dataset at ``url`` in format ``fmt``; unknown formats name the supported ones."""
    loaders = dataset_loaders()
    if fmt not in loaders:
        raise ValueError(f"dataset format {fmt!r} is not supported here; use one of {sorted(loaders)}")
    return loaders[fmt](url)
