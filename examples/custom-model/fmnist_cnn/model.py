"""A small CNN for 3x32x32 images, written the way one writes any PyTorch model -- plus one method,
``fedmist_stages()``, that tells fedmist the order of its stages so MistNet can cut it at ``cut_layer``."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv 8@3x3 -> ReLU -> pool -> conv 16@3x3 -> ReLU -> pool -> fc 64 -> ReLU -> fc classes."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)          # 8 x 16 x 16
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)          # 16 x 8 x 8
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 8 * 8, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, num_classes)

    def fedmist_stages(self) -> "OrderedDict[str, nn.Module]":
        """The stages in forward order. ``cut_layer: 3`` (or ``pool1``) puts conv1/relu1/pool1 on the edge,
        which then sends 8x16x16 = 2,048 bits per image."""
        names = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2")
        return OrderedDict((name, getattr(self, name)) for name in names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.fedmist_stages().values():
            x = stage(x)
        return x


def small_cnn(num_classes: int = 10) -> SmallCNN:
    """The model factory the manifests name: ``model: fmnist_cnn.model:small_cnn``."""
    return SmallCNN(num_classes)
