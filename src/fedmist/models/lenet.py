"""LeNet-5 as a flat ``nn.Sequential`` so that any module index is a valid MistNet cut (DESIGN 5.1)."""

from __future__ import annotations

from torch import nn


def lenet5(num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 for 1x28x28 inputs as 12 modules, indexed for ``cut_layer``.

    ``0`` conv1 6@5x5 pad 2, ``1`` ReLU, ``2`` MaxPool 2, ``3`` conv2 16@5x5, ``4`` ReLU, ``5`` MaxPool 2,
    ``6`` Flatten, ``7`` fc 400->120, ``8`` ReLU, ``9`` fc 120->84, ``10`` ReLU, ``11`` fc 84->classes.
    ``cut_layer=3`` puts modules 0..2 on the edge: 6x14x14 = 1,176 features per image. The layers are kept
    flat (no nested blocks) so state-dict keys are ``"<index>.weight"`` and slicing by index is trivial.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )
