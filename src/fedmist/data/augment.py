"""Feature-map augmentations for the cloud side of MistNet (DESIGN 5.6).

The cloud sees each edge sample once, as one fixed noisy draw, for every epoch; it can memorise that
noise. Cheap geometric transforms of the (C, H, W) feature maps make each epoch's view different. They act
on the maps, not on images, since images never leave the edge. Looked up by name in a dict registry.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def random_hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror half of the maps left-right (clothes are roughly left-right symmetric)."""
    mask = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(mask.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Translate each sample's maps by up to ``max_shift`` cells, filling with zeros (a "did not fire" bit)."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    s = max_shift
    padded = torch.nn.functional.pad(x, (s, s, s, s))
    dy = torch.randint(0, 2 * s + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * s + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    batch = torch.arange(b)[:, None, None, None]
    chans = torch.arange(x.shape[1])[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_dropout(x: torch.Tensor, gen: torch.Generator, rate: float = 0.2) -> torch.Tensor:
    """Zero a random ``rate`` of the inputs and rescale the rest (inverted dropout: expectation unchanged).

    The cloud sees one fixed noisy draw per sample every epoch and can memorise its flips; dropping a
    different subset each time makes that memorisation useless.
    """
    keep = torch.rand(x.shape, generator=gen) >= rate
    return x * keep / (1.0 - rate)


def flip_and_shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return random_shift(random_hflip(x, gen), gen)


def feature_augmentations() -> dict[str, Augmentation | None]:
    """Registry of named augmentations; ``"none"`` disables augmentation."""
    return {"none": None, "flip": random_hflip, "shift": random_shift, "flip_shift": flip_and_shift,
            "dropout": random_dropout}


def resolve_augmentation(augment: str | Augmentation | None) -> Augmentation | None:
    """Name, callable or None -> callable or None, with a clear error for unknown names."""
    if augment is None or callable(augment):
        return augment
    registry = feature_augmentations()
    if augment not in registry:
        raise ValueError(f"unknown feature augmentation {augment!r}: use one of {sorted(registry)} or a callable")
    return registry[augment]
