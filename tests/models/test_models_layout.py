"""Channels-last training gives the same gradients as the default layout and leaves no trace on the model."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedmist.models.layout import channels_last_training, to_channels_last
from fedmist.models.lenet import lenet5


def _grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def _pool_backward_copies(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """How many tensors the max-pool backward passes copied to another layout (``aten::contiguous``)."""
    from torch.profiler import profile

    with profile() as prof:
        F.cross_entropy(model(x), y).backward()
    count = 0
    for event in prof.events():
        parent = event.cpu_parent
        if event.name == "aten::contiguous" and parent is not None and "max_pool2d" in parent.name:
            count += 1
    return count


def test_gradients_match_the_default_layout_and_pool_backward_copies_nothing() -> None:
    torch.manual_seed(0)
    model = lenet5()
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    expected = _grads(model, x, y)
    with channels_last_training(model):
        got = _grads(model, to_channels_last(x), y)
        assert _pool_backward_copies(model, to_channels_last(x), y) == 0
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # the copies the hook avoids: plain channels-last makes the last pool's backward convert its tensors
    model.to(memory_format=torch.channels_last)
    assert _pool_backward_copies(model, to_channels_last(x), y) > 0


def test_the_model_leaves_in_the_default_layout_without_hooks() -> None:
    model = lenet5()
    with channels_last_training(model):
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert all(len(m._forward_hooks) == 1 for m in (model[2], model[5]))
    assert all(p.is_contiguous() for p in model.parameters())
    assert model[3].weight.stride() == torch.empty(16, 6, 5, 5).stride()
    assert all(not m._forward_hooks for m in model.modules())
