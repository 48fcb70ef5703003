"""Our own data format: PNG files in one folder per class, ``<root>/<split>/<class name>/<n>.png``.

``load_pngs`` is the loader the manifests name (``format: python``, ``url: fmnist_cnn.data:load_pngs?...``);
fedmist calls it with the split and the url's options and gets a torch Dataset of (3x32x32 float, label).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "data"


class PngFolder(Dataset):
    """The PNGs of one split, as RGB float tensors in [0, 1] and class indices."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} does not exist; run make_pngs.py first")
        self.items = [(path, label) for label, name in enumerate(CLASSES)
                      for path in sorted((folder / name).glob("*.png"))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), label


def load_pngs(split: str, root: str | None = None) -> PngFolder:
    """The loader: ``split`` is a folder under ``root`` (default: ``data/`` beside this package)."""
    return PngFolder((Path(root) if root else DEFAULT_ROOT) / split)
