"""IDX files (the MNIST family's format), read and written without any download (DESIGN 8).

Layout: two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per dimension,
then the data in big-endian row-major order. Files may be gzip-compressed (``.gz``, detected by content).
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

IMAGES_TAG = "images-idx3-ubyte"
LABELS_TAG = "labels-idx1-ubyte"


def _dtype_codes() -> dict[int, np.dtype]:
    """IDX dtype codes -> big-endian numpy dtypes."""
    return {
        0x08: np.dtype(">u1"),
        0x09: np.dtype(">i1"),
        0x0B: np.dtype(">i2"),
        0x0C: np.dtype(">i4"),
        0x0D: np.dtype(">f4"),
        0x0E: np.dtype(">f8"),
    }


def _read_bytes(path: Path) -> bytes:
    """Whole file, gunzipped when it starts with the gzip magic (names lie more often than headers)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"IDX file not found: {path}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from exc
    return raw


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file into a native-endian array, validating header and size."""
    p = Path(path)
    data = _read_bytes(p)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{p}: not an IDX file (bad magic {data[:4].hex() or 'empty'})")
    code, ndim = data[2], data[3]
    dtype = _dtype_codes().get(code)
    if dtype is None:
        raise ValueError(f"{p}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"{p}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{p}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{p}: IDX dims {dims} need {expected} data bytes, file has {len(data) - header}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write an IDX file (gzip-compressed when the name ends in ``.gz``), atomically via temp + rename."""
    p = Path(path)
    arr = np.asarray(array)
    codes = {dt.kind + str(dt.itemsize): code for code, dt in _dtype_codes().items()}
    code = codes.get(arr.dtype.kind + str(arr.dtype.itemsize))
    if code is None or arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"cannot write {arr.dtype} array of shape {arr.shape} as IDX ({p})")
    be = arr.astype(arr.dtype.newbyteorder(">"), copy=False)
    payload = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + be.tobytes()
    if p.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _is_images_file(name: str) -> bool:
    return name.endswith(IMAGES_TAG) or name.endswith(IMAGES_TAG + ".gz")


def _images_in(directory: Path, prefix: str = "") -> list[Path]:
    return sorted(
        f for f in directory.iterdir() if f.is_file() and f.name.startswith(prefix) and _is_images_file(f.name)
    )


def find_idx_pair(url: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Locate ``(images, labels)`` from a directory, an images file, or a directory + file prefix.

    A directory must hold exactly one images file (e.g. the ``images-idx3-ubyte.gz`` that
    :func:`fedmist.data.split.split_dataset` writes); with several (train and t10k side by side) name the
    prefix: ``/usr/share/datasets/fashion-mnist/t10k``.
    """
    p = Path(url)
    if p.is_dir():
        candidates = _images_in(p)
        if len(candidates) != 1:
            found = [c.name for c in candidates] or "none"
            raise ValueError(
                f"{p}: expected exactly one *{IMAGES_TAG}[.gz] file, found {found}; "
                f"pass a file or a prefix such as {p / 'train'}"
            )
        images = candidates[0]
    elif p.is_file():
        if IMAGES_TAG not in p.name:
            raise ValueError(f"{p}: an IDX images file name must contain {IMAGES_TAG!r}")
        images = p
    elif p.parent.is_dir():
        candidates = _images_in(p.parent, p.name)
        if len(candidates) != 1:
            found = [c.name for c in candidates] or "none"
            raise ValueError(f"{p}: expected exactly one images file with this prefix, found {found}")
        images = candidates[0]
    else:
        raise FileNotFoundError(f"dataset not found: {p}")
    labels = images.with_name(images.name.replace("images-idx3", "labels-idx1"))
    if not labels.is_file():
        raise FileNotFoundError(f"labels file {labels} not found next to {images}")
    return images, labels


def load_idx_dataset(url: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Load ``(images uint8 (N, H, W), labels uint8 (N,))`` — (N, 28, 28) for the MNIST family."""
    images_path, labels_path = find_idx_pair(url)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{images_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    return images, labels
