"""Train in the channels-last memory layout, without the copies it can hide.

Why channels-last: oneDNN runs the small convolutions and max-pooling of LeNet-sized models vectorised over
channels, measured 1.2-1.5x faster per training step than the default layout on the 2-core machine.

Why the gradient hook: a ``Flatten`` after the last pooling layer sends its gradient back in the default
layout, and torch's CPU max-pool backward then converts its saved input and indices to the default layout
and back (two copies of the pool's input per step). Handing it a channels-last gradient instead avoids them:
measured 280 us instead of 1,000 us for the backward of a (256, 16, 10, 10) max-pool on this CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

POOLS = (nn.MaxPool2d,)  # the measured case; other layers keep torch's default gradient layout


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor in channels-last layout (anything else unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _grad_to_channels_last(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
    if isinstance(output, torch.Tensor) and output.requires_grad and output.dim() == 4:
        output.register_hook(to_channels_last)


@contextmanager
def channels_last_training(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block ``model`` is channels-last and its pooling layers get channels-last gradients; after
    it the model is back in the default layout, so state dicts and wire payloads never see the difference."""
    model.to(memory_format=torch.channels_last)
    handles = [m.register_forward_hook(_grad_to_channels_last) for m in model.modules() if isinstance(m, POOLS)]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
        model.to(memory_format=torch.contiguous_format)
