"""Sedna's image-index datasets (``format: txt`` and ``format: csv``) and an exporter that writes them.

A ``txt`` index has one ``path label`` (or ``path,label``) per line; a ``csv`` index has rows ``path,label``
with an optional ``path,label`` header. Paths are relative to the index file (absolute paths are kept), as in
Sedna's examples, so a dataset folder can be moved or re-rooted with ``--path-map``. Images load with PIL as
grayscale uint8 and must all have one size; every problem is reported as ``file:line: what``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fedmist.data.idx import load_idx_dataset

Entry = tuple[Path, int, int]  # image path, label, line number in the index


class IndexFileError(ValueError):
    """A bad index line or image; the message starts with ``file:line``."""


def _label(raw: str, where: str) -> int:
    text = raw.strip()
    if not text.isdigit():
        raise IndexFileError(f"{where}: label {raw.strip()!r} is not a non-negative integer")
    return int(text)


def _resolve(base: Path, raw: str, where: str) -> Path:
    text = raw.strip()
    if not text:
        raise IndexFileError(f"{where}: empty image path")
    path = Path(text)
    return path if path.is_absolute() else base / path


def _index_file(url: str | os.PathLike[str], suffix: str) -> Path:
    """The index itself: ``url`` when it is a file, else the one ``*.{suffix}`` inside the folder."""
    p = Path(url)
    if p.is_file():
        return p
    if p.is_dir():
        found = sorted(p.glob(f"*.{suffix}"))
        if len(found) == 1:
            return found[0]
        raise FileNotFoundError(f"{p}: expected one *.{suffix} index file, found {[f.name for f in found] or 'none'}")
    raise FileNotFoundError(f"index file not found: {p}")


def parse_txt_index(path: Path) -> list[Entry]:
    """Lines ``path label`` or ``path,label``; blank lines and ``#`` comments are skipped."""
    entries: list[Entry] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{path}:{number}"
            parts = text.rsplit(",", 1) if "," in text else text.rsplit(None, 1)
            if len(parts) != 2:
                raise IndexFileError(f"{where}: expected 'path label' or 'path,label', got {text[:80]!r}")
            entries.append((_resolve(path.parent, parts[0], where), _label(parts[1], where), number))
    return entries


def parse_csv_index(path: Path) -> list[Entry]:
    """Rows ``path,label``; a first row whose cells are ``path`` and ``label`` (any case) is a header."""
    entries: list[Entry] = []
    with open(path, encoding="utf-8", newline="") as handle:
        columns = (0, 1)
        for number, row in enumerate(csv.reader(handle), start=1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            lowered = [c.lower() for c in cells]
            if number == 1 and "path" in lowered and "label" in lowered:
                columns = (lowered.index("path"), lowered.index("label"))
                continue
            where = f"{path}:{number}"
            if len(cells) <= max(columns):
                raise IndexFileError(f"{where}: expected columns path,label, got {len(cells)} cell(s)")
            entries.append((_resolve(path.parent, cells[columns[0]], where), _label(cells[columns[1]], where), number))
    return entries


def load_images(entries: Iterable[Entry], index: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read every image as grayscale uint8 into one (N, H, W) array; labels as uint8 (int64 past 255)."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    shape: tuple[int, ...] | None = None
    for image_path, label, number in entries:
        where = f"{index}:{number}"
        try:
            with Image.open(image_path) as img:
                array = np.asarray(img.convert("L"), dtype=np.uint8)
        except FileNotFoundError:
            raise IndexFileError(f"{where}: image {image_path} not found") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise IndexFileError(f"{where}: cannot read image {image_path}: {exc}") from None
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise IndexFileError(f"{where}: image {image_path} is {array.shape[1]}x{array.shape[0]}, "
                              f"the first image is {shape[1]}x{shape[0]}")
        images.append(array)
        labels.append(label)
    if not images:
        raise IndexFileError(f"{index}: the index lists no images")
    dtype = np.uint8 if max(labels) < 256 else np.int64
    return np.stack(images), np.asarray(labels, dtype=dtype)


def load_txt_dataset(url: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sedna ``format: txt``: ``url`` is the index file (or a folder holding exactly one ``*.txt``)."""
    index = _index_file(url, "txt")
    return load_images(parse_txt_index(index), index)


def load_csv_dataset(url: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sedna ``format: csv``: ``url`` is the CSV file (or a folder holding exactly one ``*.csv``)."""
    index = _index_file(url, "csv")
    return load_images(parse_csv_index(index), index)


def write_png_split(out: Path, images: np.ndarray, labels: np.ndarray, index_name: str = "index.txt") -> Path:
    """Write ``out/images/NNNNN.png`` and ``out/<index_name>`` with lines ``images/NNNNN.png label``."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(images))))
    lines = []
    for i, (image, label) in enumerate(zip(images, labels)):
        name = f"images/{i:0{width}d}.png"
        Image.fromarray(np.ascontiguousarray(image), mode="L").save(out / name, optimize=False, compress_level=1)
        lines.append(f"{name} {int(label)}\n")
    index = out / index_name
    tmp = index.with_suffix(index.suffix + ".tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, index)
    return index


def export_pngs(source: str | os.PathLike[str], out: str | os.PathLike[str], limit: int | None = None,
                edges: list[int] | None = None, seed: int = 0) -> dict[str, int]:
    """Write an MNIST-format dataset as PNG files with Sedna txt indexes.

    Without ``edges``: ``out/train`` and ``out/test`` (each cut to ``limit`` images if given). With ``edges``:
    disjoint IID ``out/edge1..N`` of those sizes from the (seed-shuffled) train set, plus ``out/test``.
    Returns the number of images per split.
    """
    src, dst = Path(source), Path(out)
    train_x, train_y = load_idx_dataset(src / "train")
    test_x, test_y = load_idx_dataset(src / "t10k")
    cap = (lambda n: n) if limit is None else (lambda n: min(n, limit))
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if edges:
        if any(e <= 0 for e in edges) or sum(edges) > len(train_x):
            raise ValueError(f"--edges {edges}: sizes must be positive and sum to at most {len(train_x)}")
        order = np.random.default_rng(seed).permutation(len(train_x))
        bounds = np.cumsum([0, *edges])
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
            idx = np.sort(order[a:b])[:cap(b - a)]
            parts[f"edge{i}"] = (train_x[idx], train_y[idx])
    else:
        parts["train"] = (train_x[:cap(len(train_x))], train_y[:cap(len(train_y))])
    parts["test"] = (test_x[:cap(len(test_x))], test_y[:cap(len(test_y))])
    counts: dict[str, int] = {}
    for name, (x, y) in parts.items():
        write_png_split(dst / name, x, y)
        counts[name] = len(y)
    return counts
