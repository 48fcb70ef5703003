"""A COCO128-layout detection dataset synthesized from Fashion-MNIST (DESIGN section 8).

Why: tests and benchmarks need a real detection set and nothing may be downloaded. Each image pastes several
Fashion-MNIST objects (scaled, tinted) onto a varied background (solid colour, gradient or noise) and writes
YOLO label lines ``class cx cy w h`` (normalised) for their tight boxes. The layout is the one ultralytics and
the seed's COCO128 use: ``images/<split>/*.jpg``, ``labels/<split>/*.txt`` and a data yaml with class names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from fedmist.data.idx import load_idx_dataset

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """One of three background kinds, so the detector cannot rely on a constant backdrop."""
    kind = rng.integers(3)
    base = rng.integers(0, 256, size=3).astype(np.float32)
    if kind == 0:
        img = np.broadcast_to(base, (size, size, 3)).copy()
    elif kind == 1:
        other = rng.integers(0, 256, size=3).astype(np.float32)
        t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
        ramp = base * (1 - t) + other * t
        img = np.broadcast_to(ramp, (size, size, 3)).copy()
        if rng.integers(2):
            img = img.transpose(1, 0, 2).copy()
    else:
        img = base + rng.normal(0.0, 40.0, size=(size, size, 3)).astype(np.float32)
    return img


def _paste(img: np.ndarray, obj: np.ndarray, rng: np.random.Generator, taken: list[tuple[int, int, int, int]]
           ) -> tuple[int, int, int, int] | None:
    """Paste a scaled, tinted object where it overlaps earlier ones little; return its tight pixel box."""
    size = img.shape[0]
    side = int(rng.integers(max(12, size // 6), max(13, size // 2.5)))
    mask = np.asarray(Image.fromarray(obj).resize((side, side), Image.BILINEAR), dtype=np.float32) / 255.0
    ys, xs = np.nonzero(mask > 0.1)
    if len(ys) == 0:
        return None
    for _ in range(10):
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
        if all(_overlap(box, other) < 0.2 for other in taken):
            break
    else:
        return None
    colour = rng.integers(0, 256, size=3).astype(np.float32)
    region = img[y0:y0 + side, x0:x0 + side]
    alpha = mask[..., None]
    img[y0:y0 + side, x0:x0 + side] = region * (1 - alpha) + colour * alpha
    return box


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(1, smaller)


def write_split(out: Path, split: str, count: int, images: np.ndarray, labels: np.ndarray, size: int,
                objects: tuple[int, int], rng: np.random.Generator) -> int:
    """Write ``count`` images and label files of one split; return the number of boxes written."""
    img_dir, lbl_dir = out / "images" / split, out / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    boxes_total = 0
    for i in range(count):
        img = _background(rng, size)
        lines: list[str] = []
        taken: list[tuple[int, int, int, int]] = []
        for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
            k = int(rng.integers(len(images)))
            box = _paste(img, images[k], rng, taken)
            if box is None:
                continue
            taken.append(box)
            x0, y0, x1, y1 = box
            lines.append(f"{int(labels[k])} {(x0 + x1) / 2 / size:.6f} {(y0 + y1) / 2 / size:.6f} "
                         f"{(x1 - x0) / size:.6f} {(y1 - y0) / size:.6f}")
        name = f"{split}_{i:06d}"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(img_dir / f"{name}.jpg", quality=92)
        (lbl_dir / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        boxes_total += len(lines)
    return boxes_total


def synthesize_detection(source: str | Path, out: str | Path, *, train: int, val: int, size: int = 320,
                         objects: tuple[int, int] = (2, 5), seed: int = 0,
                         classes: tuple[int, ...] | None = None) -> dict[str, int]:
    """Write a COCO128-layout dataset at ``out`` (``train``/``val`` images of ``size`` px) and ``data.yaml``.

    Objects come from the Fashion-MNIST train split for ``train`` and from its test split for ``val``, so
    no object image appears in both. ``classes`` keeps only those Fashion-MNIST classes, renumbered 0..k-1 in
    the order given (why: a few well-separated classes make a detector that learns in minutes on a CPU, which
    quality benchmarks need). Returns ``{"train": boxes, "val": boxes}``.
    """
    if train < 1 or val < 0 or size < 32 or not 1 <= objects[0] <= objects[1]:
        raise ValueError(f"synth-detection needs train >= 1, val >= 0, size >= 32 and 1 <= min <= max objects "
                         f"(got train={train}, val={val}, size={size}, objects={objects})")
    if classes is not None and (not classes or len(set(classes)) != len(classes)
                                or not all(0 <= c < len(FASHION_CLASSES) for c in classes)):
        raise ValueError(f"classes must be distinct Fashion-MNIST class ids 0..{len(FASHION_CLASSES) - 1}, got {classes}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    src = Path(source)
    counts = {}
    for split, count, part in (("train", train, "train"), ("val", val, "t10k")):
        if count == 0:
            continue
        images, labels = load_idx_dataset(src / part if _has_part(src, part) else src)
        if classes is not None:
            images, labels = _keep_classes(images, labels, classes)
        counts[split] = write_split(out, split, count, images, labels, size, objects, rng)
    names = [FASHION_CLASSES[c] for c in classes] if classes is not None else list(FASHION_CLASSES)
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val" if val else "images/train",
            "nc": len(names), "names": dict(enumerate(names))}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return counts


def _has_part(src: Path, part: str) -> bool:
    return any(src.glob(f"{part}-images-idx3-ubyte*"))


def _keep_classes(images: np.ndarray, labels: np.ndarray, classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Only the objects of ``classes``, relabelled by their position in ``classes``."""
    keep = np.isin(labels, classes)
    remap = np.full(int(labels.max()) + 1, -1, dtype=np.int64)
    remap[list(classes)] = np.arange(len(classes))
    return images[keep], remap[labels[keep]]
