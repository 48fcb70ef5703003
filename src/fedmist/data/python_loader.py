"""``Dataset.spec.format: python``: data from the user's own loader, named by import path.

The manifest's ``url`` is ``package.module:loader`` with optional ``?name=value&...`` options. fedmist calls
``loader(split, **options)`` -- ``split`` is the ``split`` option when given, else ``"train"`` for a
training worker's Dataset and ``"test"`` for ``TEST_DATASET_URL`` -- and the loader returns a
``torch.utils.data.Dataset`` (map-style: ``len`` and ``[i]``) whose items are ``(input, label)``: an input
tensor (or array) of any shape the user's model takes, and an integer class label.

Why the dataset is read into memory once (:func:`materialize`): the rest of fedmist works on in-memory
batches (MistNet extracts once, batched; FedAvg reshuffles every epoch), exactly as it does with the built-in
IDX/txt/csv data, so user data needs no second code path. The inputs keep the dtype the loader gives (store
uint8 images and convert in the model if memory matters); a dataset larger than ``MAX_BYTES`` is refused with
a clear error instead of exhausting the machine.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import torch

from fedmist.imports import ImportPathError, import_callable, parse_query, split_import_path

MAX_BYTES: Final = 16 * 2**30
WHAT: Final = "dataset loader"


def load_python_dataset(url: str, default_split: str = "train") -> tuple[torch.Tensor, np.ndarray]:
    """Call the loader ``url`` names and read its dataset: ``(inputs (N, ...), int64 labels (N,))``.

    Raises ``ValueError`` (an :class:`~fedmist.imports.ImportPathError` for import problems) with one line.
    """
    _, _, query = split_import_path(url, WHAT)
    options = parse_query(query, WHAT)
    split = options.pop("split", default_split)
    loader = import_callable(url.split("?", 1)[0], WHAT)
    try:
        dataset = loader(split, **options)
    except Exception as exc:  # noqa: BLE001 - the user's loader failing is a configuration problem, in one line
        raise ValueError(f"{WHAT} {url!r} failed for split {split!r}: {type(exc).__name__}: "
                         f"{_first_line(exc)}") from None
    return materialize(dataset, f"{WHAT} {url!r} (split {split!r})")


def materialize(dataset: Any, where: str = "dataset") -> tuple[torch.Tensor, np.ndarray]:
    """Stack a map-style dataset of ``(input, label)`` items into ``(inputs, labels)``.

    Every input must have the first one's shape and dtype; labels must be non-negative integers.
    """
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise ImportPathError(f"{where} returned {type(dataset).__name__}, not a torch Dataset with len() and "
                              f"[index] (items (input tensor, int label))")
    n = len(dataset)
    if n == 0:
        raise ValueError(f"{where} returned an empty dataset")
    first_x, _ = _item(dataset, 0, where)
    if n * first_x.numel() * first_x.element_size() > MAX_BYTES:
        raise ValueError(f"{where}: {n} samples of shape {tuple(first_x.shape)} exceed {MAX_BYTES // 2**30} GiB "
                         f"in memory; store inputs as uint8 or split the data across more edges")
    inputs = torch.empty((n, *first_x.shape), dtype=first_x.dtype)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        x, y = _item(dataset, i, where)
        if x.shape != first_x.shape or x.dtype != first_x.dtype:
            raise ValueError(f"{where}: item {i} is {x.dtype} {tuple(x.shape)}, but item 0 is "
                             f"{first_x.dtype} {tuple(first_x.shape)}; every input must have one shape and dtype")
        inputs[i] = x
        labels[i] = y
    return inputs, labels


def _item(dataset: Any, index: int, where: str) -> tuple[torch.Tensor, int]:
    try:
        item = dataset[index]
    except Exception as exc:  # noqa: BLE001 - reported as the user's data problem, in one line
        raise ValueError(f"{where}: reading item {index} failed: {type(exc).__name__}: {_first_line(exc)}") from None
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise ValueError(f"{where}: item {index} is {type(item).__name__}, expected a pair (input tensor, int label)")
    x, y = item
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{where}: item {index} input is {type(x).__name__}, expected a torch.Tensor or numpy array")
    if isinstance(y, torch.Tensor) and y.numel() == 1:
        y = y.item()
    if isinstance(y, (bool, float)) or not isinstance(y, (int, np.integer)) or int(y) < 0:
        raise ValueError(f"{where}: item {index} label is {y!r}, expected a non-negative integer class")
    return x, int(y)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
