"""IDX reading/writing and dataset location."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from fedmist.data.idx import find_idx_pair, load_idx_dataset, read_idx, write_idx
from fedmist.data.tensors import images_to_tensor


@pytest.mark.parametrize("name", ["a-images-idx3-ubyte", "a.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path: Path, name: str, dtype: type) -> None:
    arr = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    if dtype is np.uint8:
        arr = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    path = write_idx(tmp_path / name, arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")


def test_header_layout_is_mnist(tmp_path: Path) -> None:
    write_idx(tmp_path / "l", np.array([3, 1], dtype=np.uint8))
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 2, 3, 1])


@pytest.mark.parametrize(
    ("payload", "pattern"),
    [
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "not an IDX file \\(bad magic 01000801\\)"),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "unknown IDX dtype code 0x42"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 3, 5]), "need 3 data bytes, file has 1"),
        (bytes([0, 0, 8, 2, 0, 0]), "truncated IDX header"),
        (b"", "bad magic empty"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, payload: bytes, pattern: str) -> None:
    path = tmp_path / "bad-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(ValueError, match=pattern) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def _write_pair(directory: Path, prefix: str, n: int) -> None:
    write_idx(directory / f"{prefix}images-idx3-ubyte.gz", np.full((n, 28, 28), 7, dtype=np.uint8))
    write_idx(directory / f"{prefix}labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)


def test_load_by_directory_file_and_prefix(tmp_path: Path) -> None:
    _write_pair(tmp_path / "one", "", 4)
    images, labels = load_idx_dataset(tmp_path / "one")
    assert images.shape == (4, 28, 28) and images.dtype == np.uint8 and labels.tolist() == [0, 1, 2, 3]
    _write_pair(tmp_path / "two", "train-", 5)
    _write_pair(tmp_path / "two", "t10k-", 3)
    assert len(load_idx_dataset(tmp_path / "two" / "t10k")[0]) == 3
    assert len(load_idx_dataset(str(tmp_path / "two" / "train-images-idx3-ubyte.gz"))[1]) == 5
    with pytest.raises(ValueError, match="expected exactly one .*t10k-images.*train-images.*prefix"):
        load_idx_dataset(tmp_path / "two")
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        load_idx_dataset(tmp_path / "nowhere" / "x")


def test_mismatch_and_missing_labels(tmp_path: Path) -> None:
    write_idx(tmp_path / "images-idx3-ubyte.gz", np.zeros((3, 28, 28), dtype=np.uint8))
    with pytest.raises(FileNotFoundError, match="labels-idx1-ubyte.gz not found"):
        find_idx_pair(tmp_path)
    write_idx(tmp_path / "labels-idx1-ubyte.gz", np.zeros(2, dtype=np.uint8))
    with pytest.raises(ValueError, match="has 3 images but .* has 2 labels"):
        load_idx_dataset(tmp_path)


def test_images_to_tensor_scales_to_unit_interval() -> None:
    x = images_to_tensor(np.array([[[0, 255], [51, 102]]], dtype=np.uint8))
    assert x.shape == (1, 1, 2, 2) and x.dtype.is_floating_point
    assert x.flatten().tolist() == pytest.approx([0.0, 1.0, 0.2, 0.4])
    with pytest.raises(ValueError, match="uint8"):
        images_to_tensor(np.zeros((1, 2, 2), dtype=np.float32))
