"""format: python -- a user's loader by import path, read into (inputs, labels) with one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedmist.data.loaders import load_dataset, load_test_dataset
from fedmist.data.python_loader import load_python_dataset, materialize

CALLS: list[tuple[str, dict[str, str]]] = []


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int, shape: tuple[int, ...] = (3, 4, 4)) -> None:
        self.n, self.shape = n, shape

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.full(self.shape, float(i)), i % 3


def loader(split: str, **options: str) -> Pairs:
    CALLS.append((split, options))
    return Pairs(int(options.get("n", "5")))


def raising_loader(split: str) -> Pairs:
    raise FileNotFoundError(f"/nowhere/{split} does not exist\nsecond line")


def list_loader(split: str) -> int:
    return 7


def test_loader_gets_split_and_options_and_data_keep_their_shape() -> None:
    CALLS.clear()
    x, y = load_dataset(f"{__name__}:loader?split=edge2&n=4", "python")
    assert CALLS == [("edge2", {"n": "4"})]
    assert x.shape == (4, 3, 4, 4) and x.dtype == torch.float32 and float(x[3, 0, 0, 0]) == 3.0
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 0]
    load_python_dataset(f"{__name__}:loader")
    load_test_dataset(f"{__name__}:loader?n=2")
    assert [c[0] for c in CALLS[1:]] == ["train", "test"]  # the defaults of a Dataset and of TEST_DATASET_URL


def test_materialize_checks_items() -> None:
    class Ragged(Pairs):
        def __getitem__(self, i: int):
            return torch.zeros(2 + i), 1

    class BadLabel(Pairs):
        def __getitem__(self, i: int):
            return torch.zeros(2), "cat"

    with pytest.raises(ValueError, match=r"item 1 is torch.float32 \(3,\), but item 0 is torch.float32 \(2,\)"):
        materialize(Ragged(3))
    with pytest.raises(ValueError, match=r"item 0 label is 'cat', expected a non-negative integer class"):
        materialize(BadLabel(3))
    with pytest.raises(ValueError, match="returned an empty dataset"):
        materialize(Pairs(0))
    x, y = materialize([(np.ones((2, 2), dtype=np.uint8), torch.tensor(4))])  # numpy inputs, tensor labels
    assert x.dtype == torch.uint8 and y.tolist() == [4]


@pytest.mark.parametrize(("url", "message"), [
    (f"{__name__}:raising_loader", f"dataset loader '{__name__}:raising_loader' failed for split 'train': "
                                    "FileNotFoundError: /nowhere/train does not exist"),
    (f"{__name__}:list_loader", f"dataset loader '{__name__}:list_loader' (split 'train') returned int, not a torch "
                                "Dataset with len() and [index] (items (input tensor, int label))"),
    (f"{__name__}:nothing", f"dataset loader '{__name__}:nothing': module '{__name__}' has no attribute 'nothing'"),
    (f"{__name__}:loader?n", "dataset loader: option 'n' must look like name=value"),
])
def test_loader_errors_are_one_line(url: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        load_python_dataset(url)
    assert str(info.value) == message
