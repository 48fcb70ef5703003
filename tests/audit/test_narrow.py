"""fedmist.audit.narrow: a c-channel bottleneck at the cut, trained on public data, the job's parts untouched."""

from __future__ import annotations

import pytest
import torch
from tiny_world import tiny_images, tiny_parts
from torch import nn

from fedmist.audit.narrow import narrow_cut


def test_the_bottleneck_has_c_channels_and_the_parts_still_compose() -> None:
    edge, cloud = tiny_parts()
    before = {k: v.clone() for k, v in edge.state_dict().items()}
    images, labels = tiny_images(8)
    new_edge, new_cloud = narrow_cut(edge, cloud, 2, images, labels, epochs=1, batch_size=4)
    features = new_edge(torch.zeros(3, 1, 28, 28))
    wide = edge(torch.zeros(3, 1, 28, 28))
    assert features.shape == (3, 2, *wide.shape[2:])
    assert new_cloud(torch.sign(features)).shape == (3, 10)
    assert isinstance(new_cloud[0], nn.Conv2d) and new_cloud[0].in_channels == 2
    assert all(torch.equal(before[k], v) for k, v in edge.state_dict().items())  # a copy was trained
    assert not new_edge.training


def test_channels_must_narrow_the_cut() -> None:
    edge, cloud = tiny_parts()
    images, labels = tiny_images(4)
    wide = edge(torch.zeros(1, 1, 28, 28)).shape[1]
    for channels in (0, wide):
        with pytest.raises(ValueError) as info:
            narrow_cut(edge, cloud, channels, images, labels, epochs=1)
        assert str(info.value) == f"narrow channels must be in 1..{wide - 1} (the cut has {wide}), got {channels}"


def test_a_flat_cut_has_no_channels_to_narrow() -> None:
    edge = nn.Sequential(nn.Flatten(), nn.Linear(784, 16))
    cloud = nn.Sequential(nn.Linear(16, 10))
    images, labels = tiny_images(4)
    with pytest.raises(ValueError) as info:
        narrow_cut(edge, cloud, 4, images, labels)
    assert str(info.value) == "a 1x1 bottleneck needs spatial features (C, H, W) at the cut, got (16,)"
