"""YOLO / COCO128 directory datasets (``format: dir``): ``images/<split>/*.jpg|png`` + ``labels/<split>/*.txt``.

Why a lazy dataset instead of arrays in memory: at 640 px one letterboxed image is 1.2 MB of uint8, so a
detection set is read from disk batch by batch. Images are letterboxed (aspect kept, grey padding, as
ultralytics does) so boxes stay true to the objects; label boxes are moved into the letterboxed frame.

The dataset folder may be the split root itself or hold it one level down (``unzip coco128.zip -d COCO``
gives ``COCO/coco128/images/train2017``), and the split may be named (``train``, ``val``) or be the only one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
PAD_VALUE = 114  # ultralytics' letterbox grey
TRAIN_SPLITS = ("train", "train2017")
VAL_SPLITS = ("val", "val2017", "valid", "test")


def _images_roots(root: Path) -> list[Path]:
    """``root/images`` and ``root/*/images`` folders (the COCO128 zip nests one level)."""
    found = [root / "images"] if (root / "images").is_dir() else []
    found += sorted(p / "images" for p in root.iterdir() if p.is_dir() and (p / "images").is_dir())
    return found


def find_split(url: str | Path, prefer: tuple[str, ...] = TRAIN_SPLITS, *, fallback: bool = True) -> Path:
    """The images folder of one split under ``url``: a preferred split name, else (``fallback``) the only one.

    ``url`` may also be an images folder itself (a folder holding image files). Raises FileNotFoundError /
    ValueError naming the folder.
    """
    root = Path(url)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir() if p.is_file()):
        return root
    roots = _images_roots(root)
    if not roots:
        raise ValueError(f"{root}: no images/ folder (expected the COCO128 layout images/<split>/*.jpg)")
    for images in roots:
        for name in prefer:
            if (images / name).is_dir():
                return images / name
    splits = [p for images in roots for p in sorted(images.iterdir()) if p.is_dir()]
    if fallback and len(splits) == 1:
        return splits[0]
    names = [str(p.relative_to(root)) for p in splits] or "none"
    raise ValueError(f"{root}: no split named {'/'.join(prefer)} among {names}")


def label_path_of(image: Path) -> Path:
    """ultralytics' convention: the last ``images`` path component becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    index = len(parts) - 1 - parts[::-1].index("images")
    parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_labels(path: Path, nc: int | None = None) -> np.ndarray:
    """``(n, 5)`` float32 rows ``class cx cy w h`` (normalised); a missing file means no objects."""
    if not path.is_file():
        return np.zeros((0, 5), dtype=np.float32)
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            values = [float(v) for v in fields[:5]]
        except ValueError:
            raise ValueError(f"{path}:{number}: not a YOLO label line 'class cx cy w h': {line.strip()[:80]!r}") from None
        if len(fields) < 5 or values[0] < 0 or values[0] != int(values[0]) or (nc is not None and values[0] >= nc):
            raise ValueError(f"{path}:{number}: bad YOLO label line {line.strip()[:80]!r}"
                             + (f" (classes are 0..{nc - 1})" if nc else ""))
        if not all(0.0 <= v <= 1.0 for v in values[1:]):
            raise ValueError(f"{path}:{number}: box values must be normalised to [0, 1]: {line.strip()[:80]!r}")
        rows.append(values)
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def letterbox(image: Image.Image, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """RGB uint8 ``(size, size, 3)``: scaled so the long side is ``size``, centred on grey; + scale, (padx, pady)."""
    w, h = image.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = image.convert("RGB").resize((nw, nh), Image.BILINEAR) if (nw, nh) != (w, h) else image.convert("RGB")
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas[py:py + nh, px:px + nw] = np.asarray(resized)
    return canvas, scale, (px, py)


def boxes_to_letterbox(labels: np.ndarray, orig: tuple[int, int], scale: float, pad: tuple[int, int],
                       size: int) -> np.ndarray:
    """Normalised boxes of the original image -> normalised boxes of the letterboxed one."""
    out = labels.copy()
    w, h = orig
    out[:, 1] = (labels[:, 1] * w * scale + pad[0]) / size
    out[:, 2] = (labels[:, 2] * h * scale + pad[1]) / size
    out[:, 3] = labels[:, 3] * w * scale / size
    out[:, 4] = labels[:, 4] * h * scale / size
    return out


@dataclass
class DetectionDataset:
    """The images of one split, read and letterboxed on demand."""

    images: list[Path]
    imgsz: int
    nc: int | None = None

    @classmethod
    def open(cls, url: str | Path, imgsz: int = 640, prefer: tuple[str, ...] = TRAIN_SPLITS,
             nc: int | None = None) -> "DetectionDataset":
        folder = find_split(url, prefer)
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ValueError(f"{folder}: no images ({'/'.join(IMAGE_SUFFIXES)})")
        if imgsz < 32 or imgsz % 32:
            raise ValueError(f"imgsz must be a multiple of 32 (the detector's largest stride), got {imgsz}")
        return cls(images, imgsz, nc)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Letterboxed RGB uint8 ``(imgsz, imgsz, 3)`` and its ``(n, 5)`` labels in the letterboxed frame."""
        path = self.images[index]
        try:
            with Image.open(path) as img:
                img.load()
                canvas, scale, pad = letterbox(img, self.imgsz)
                orig = img.size
        except OSError as exc:
            raise ValueError(f"{path}: unreadable image ({exc})") from None
        labels = read_labels(label_path_of(path), self.nc)
        return canvas, boxes_to_letterbox(labels, orig, scale, pad, self.imgsz)

    def batch(self, start: int, stop: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Images ``[start, stop)`` as uint8 ``(B, 3, S, S)`` plus their label arrays."""
        items = [self.load(i) for i in range(start, min(stop, len(self)))]
        images = np.stack([img.transpose(2, 0, 1) for img, _ in items])
        return images, [labels for _, labels in items]


def read_class_names(url: str | Path) -> list[str] | None:
    """Class names from a data yaml in or above the dataset folder (``names:`` list or dict), if any."""
    import yaml

    root = Path(url)
    for folder in (root, *root.parents[:2]):
        for candidate in sorted(folder.glob("*.yaml")):
            try:
                data = yaml.safe_load(candidate.read_text())
            except (OSError, yaml.YAMLError):
                continue
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names)]
            if isinstance(names, list):
                return [str(n) for n in names]
    return None
