"""Make this example's data: Fashion-MNIST as 32x32 RGB PNG files in our own folder layout.

    data/<split>/<class name>/<n>.png      splits: public, edge1, edge2, test

Each 28x28 gray image is padded by 2 pixels to 32x32 and tinted with a random colour, so the inputs really
are 3-channel 32x32 images (nothing in the job may assume 28x28 gray). Reads Debian's Fashion-MNIST
(apt-get install dataset-fashion-mnist); downloads nothing.

    python make_pngs.py                                  # 2,000 public, 2 x 1,500 edge, 1,000 test images
    python make_pngs.py --out /tmp/pngs --edge 500 --test 500
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fmnist_cnn.data import CLASSES  # noqa: E402 - the layout's class folder names live with the loader

from fedmist.data.idx import read_idx  # noqa: E402

SOURCE = Path("/usr/share/datasets/fashion-mnist")


def to_rgb32(image: np.ndarray, tint: np.ndarray) -> np.ndarray:
    """28x28 uint8 gray -> 32x32x3 uint8: zero padding of 2 pixels, then scaled per channel by ``tint``."""
    padded = np.pad(image, 2).astype(np.float32)
    return np.clip(padded[:, :, None] * tint[None, None, :], 0, 255).astype(np.uint8)


def write_split(folder: Path, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for n, (image, label) in enumerate(zip(images, labels)):
        tint = rng.uniform(0.4, 1.0, size=3)
        Image.fromarray(to_rgb32(image, tint), "RGB").save(folder / CLASSES[int(label)] / f"{n:05d}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder with Fashion-MNIST's IDX files")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    parser.add_argument("--public", type=int, default=2000, help="images for pretraining (MistNet)")
    parser.add_argument("--edge", type=int, default=1500, help="images per edge (two edges)")
    parser.add_argument("--test", type=int, default=1000, help="test images (from the t10k set)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    train_x = read_idx(args.source / "train-images-idx3-ubyte.gz")
    train_y = read_idx(args.source / "train-labels-idx1-ubyte.gz")
    test_x = read_idx(args.source / "t10k-images-idx3-ubyte.gz")
    test_y = read_idx(args.source / "t10k-labels-idx1-ubyte.gz")
    order = rng.permutation(len(train_x))
    cuts = np.cumsum([args.public, args.edge, args.edge])
    splits = {"public": order[:cuts[0]], "edge1": order[cuts[0]:cuts[1]], "edge2": order[cuts[1]:cuts[2]]}
    for name, idx in splits.items():
        write_split(args.out / name, train_x[idx], train_y[idx], rng)
    test_idx = rng.permutation(len(test_x))[:args.test]
    write_split(args.out / "test", test_x[test_idx], test_y[test_idx], rng)
    counts = {**{k: len(v) for k, v in splits.items()}, "test": len(test_idx)}
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
