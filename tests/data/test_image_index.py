"""Sedna txt/csv image indexes: relative paths, both separators, headers, and errors naming file:line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedmist.data.idx import IMAGES_TAG, LABELS_TAG, write_idx
from fedmist.data.image_index import export_pngs, load_csv_dataset, load_txt_dataset
from fedmist.data.loaders import load_dataset


def _png(path: Path, value: int, size: tuple[int, int] = (4, 3), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=value if mode == "L" else (value, value, value)).save(path)


def test_txt_index_with_spaces_and_commas_relative_to_the_index(tmp_path: Path) -> None:
    _png(tmp_path / "imgs" / "a.png", 10)
    _png(tmp_path / "imgs" / "b.png", 200, mode="RGB")
    (tmp_path / "sub").mkdir()
    index = tmp_path / "sub" / "train.txt"
    index.write_text("# comment\n../imgs/a.png 3\n\n../imgs/b.png,7\n")
    images, labels = load_txt_dataset(index)
    assert images.dtype == np.uint8 and images.shape == (2, 3, 4)
    assert images[0].max() == 10 and images[1].min() == 200  # RGB converted to grayscale
    assert labels.tolist() == [3, 7]
    assert load_dataset(str(tmp_path / "sub"), "txt")[1].tolist() == [3, 7]  # a folder with one *.txt


def test_csv_index_with_and_without_header(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    (tmp_path / "h.csv").write_text("label,path\n4,a.png\n5,b.png\n")
    assert load_csv_dataset(tmp_path / "h.csv")[1].tolist() == [4, 5]
    (tmp_path / "n.csv").write_text("a.png,1\nb.png,2\n")
    images, labels = load_dataset(str(tmp_path / "n.csv"), "csv")
    assert labels.tolist() == [1, 2] and images[:, 0, 0].tolist() == [1, 2]


@pytest.mark.parametrize(("text", "message"), [
    ("a.png 1\njust-one-field\n", "train.txt:2: expected 'path label'"),
    ("a.png 1\na.png x\n", "train.txt:2: label 'x' is not a non-negative integer"),
    ("a.png 1\n\nmissing.png 2\n", "train.txt:3: image .*missing.png not found"),
    ("a.png 1\nbig.png 2\n", "train.txt:2: image .*big.png is 5x5, the first image is 4x3"),
    ("a.png -1\n", "train.txt:1: label '-1'"),
])
def test_bad_txt_lines_are_reported_with_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "big.png", 1, size=(5, 5))
    (tmp_path / "train.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_txt_dataset(tmp_path / "train.txt")


def test_bad_csv_row_and_unreadable_image_name_file_and_line(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", 1)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    (tmp_path / "x.csv").write_text("path,label\na.png,1\nonly-path\n")
    with pytest.raises(ValueError, match=r"x\.csv:3: expected columns path,label"):
        load_csv_dataset(tmp_path / "x.csv")
    (tmp_path / "y.csv").write_text("a.png,1\njunk.png,2\n")
    with pytest.raises(ValueError, match=r"y\.csv:2: cannot read image"):
        load_csv_dataset(tmp_path / "y.csv")


def test_missing_or_empty_index(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="index file not found"):
        load_txt_dataset(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="lists no images"):
        load_txt_dataset(tmp_path / "empty.txt")


def test_export_writes_pngs_that_load_back_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    train_x = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    train_y = rng.integers(0, 10, size=30, dtype=np.uint8)
    for prefix, n in (("train", 30), ("t10k", 12)):
        write_idx(src / f"{prefix}-{IMAGES_TAG}.gz", train_x[:n])
        write_idx(src / f"{prefix}-{LABELS_TAG}.gz", train_y[:n])
    counts = export_pngs(src, tmp_path / "out", limit=8, edges=[10, 12], seed=1)
    assert counts == {"edge1": 8, "edge2": 8, "test": 8}
    x1, y1 = load_txt_dataset(tmp_path / "out" / "edge1" / "index.txt")
    x2, y2 = load_dataset(str(tmp_path / "out" / "edge2" / "index.txt"), "txt")
    pairs = {(x.tobytes(), int(y)) for x, y in zip(train_x, train_y)}
    assert all((x.tobytes(), int(y)) in pairs for x, y in zip(np.concatenate([x1, x2]), np.concatenate([y1, y2])))
    assert len({x.tobytes() for x in np.concatenate([x1, x2])}) == 16  # the edges are disjoint
    test_x, test_y = load_txt_dataset(tmp_path / "out" / "test" / "index.txt")
    assert np.array_equal(test_x, train_x[:8]) and np.array_equal(test_y, train_y[:8])
