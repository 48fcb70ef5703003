"""Dataset loading by the manifest's ``format``, through a registry (no string dispatch chains).

Each loader returns ``(images uint8 (N, H, W), labels uint8/int (N,))`` for classification data, except
``python`` (the user's own loader, :mod:`fedmist.data.python_loader`), which returns ``(inputs torch.Tensor
(N, ...), int64 labels)`` in whatever input shape the user's model takes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedmist.data.idx import load_idx_dataset
from fedmist.data.image_index import load_csv_dataset, load_txt_dataset

Loader = Callable[[str], tuple[np.ndarray, np.ndarray]]


def dataset_loaders() -> dict[str, Loader]:
    """Built-in loaders keyed by ``Dataset.spec.format``."""
    return {"idx": load_idx_dataset, "txt": load_txt_dataset, "csv": load_csv_dataset, "python": _load_python}


def _load_python(url: str) -> tuple[object, np.ndarray]:
    from fedmist.data.python_loader import load_python_dataset  # torch; only jobs with user loaders pay

    return load_python_dataset(url)


def load_dataset(url: str, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Load the dataset at ``url`` in format ``fmt``; unknown formats name the supported ones."""
    loaders = dataset_loaders()
    if fmt not in loaders:
        raise ValueError(f"dataset format {fmt!r} is not supported here; use one of {sorted(loaders)}")
    return loaders[fmt](url)


def test_dataset_error(url: str, exc: BaseException) -> str:
    """The one-line error for an unreadable ``TEST_DATASET_URL``: the setting, then the reader's first line
    (which often names the path already, so the url is added only when it does not)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"TEST_DATASET_URL: {first}" if url in first else f"TEST_DATASET_URL {url}: {first}"


def load_test_dataset(url: str) -> tuple[object, np.ndarray]:
    """The data at ``TEST_DATASET_URL``, which has no Dataset manifest to give its format: an import path
    ``package.module:loader[?...]`` is the user's loader (split ``"test"`` unless the url says otherwise),
    ``*.txt`` / ``*.csv`` are Sedna indexes, anything else is an IDX folder."""
    from fedmist.imports import is_import_path

    if is_import_path(url):
        from fedmist.data.python_loader import load_python_dataset

        return load_python_dataset(url, default_split="test")
    suffix = url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
    return load_dataset(url, {"txt": "txt", "csv": "csv"}.get(suffix, "idx"))
