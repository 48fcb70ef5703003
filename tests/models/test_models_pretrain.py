"""Pretraining runs plain and channel-aware; the training-time channel behaves like the real one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedmist.models.lenet import lenet5
from fedmist.models.pretrain import BitChannel, pretrain
from fedmist.models.split import drop_trailing_relus, split_model
from fedmist.privacy.channel import keep_probability


def test_bit_channel_forward_is_the_channel_with_a_sigmoid_gradient() -> None:
    s = torch.tensor([-1.0, 0.0, 0.5, 2.0], requires_grad=True)
    out = BitChannel(float("inf"), temperature=0.5)(s)
    assert out.tolist() == [0.0, 0.0, 1.0, 1.0]
    out.sum().backward()
    sig = torch.sigmoid(s.detach() / 0.5)
    assert s.grad is not None and torch.allclose(s.grad, sig * (1 - sig) / 0.5)
    torch.manual_seed(0)
    noisy = BitChannel(1.0, debias=False)(torch.ones(100_000))
    assert float(noisy.mean()) == pytest.approx(keep_probability(1.0), abs=0.01)  # ones kept w.p. p
    debiased = BitChannel(1.0, debias=True)(torch.ones(100_000))
    assert float(debiased.mean()) == pytest.approx(1.0, abs=0.03)  # unbiased for the clean bit


def test_drop_trailing_relus_gives_the_same_bits() -> None:
    torch.manual_seed(0)
    edge, _ = split_model(lenet5(), 3)
    sur = drop_trailing_relus(edge)
    assert [type(m) for m in sur] == [nn.Conv2d, nn.MaxPool2d]
    x = torch.rand(8, 1, 28, 28) - 0.3
    with torch.no_grad():
        assert torch.equal(edge(x) > 0, sur(x) > 0)
    odd = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid())
    assert drop_trailing_relus(odd) is odd  # nothing provably equivalent to drop


def test_pretrain_returns_lenet_state_dict_and_reports_epochs() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(96, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=96).astype(np.uint8)
    seen: list[int] = []
    threads = torch.get_num_threads()
    for cut in (None, 3):
        sd = pretrain(images, labels, epochs=1, batch_size=32, cut_layer=cut, channel_epsilon=2.0, threads=threads,
                      on_epoch=lambda e, s: seen.append(e))
        assert sd.keys() == lenet5().state_dict().keys()
    assert seen == [1, 1]
