"""Audit fixtures: a small real Fashion-MNIST split and a LeNet-5 pretrained through the bit channel, in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def audit_world():
    """public 4k (attacker's auxiliary data) / victims 1k from disjoint train images, and a pretrained edge."""
    import torch

    from fedmist.data.idx import load_idx_dataset
    from fedmist.models.pretrain import pretrain
    from fedmist.models.registry import build_model
    from fedmist.models.split import split_model

    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    images, labels = load_idx_dataset(FMNIST / "train")
    order = np.random.default_rng(3).permutation(len(images))
    pub, vic = order[:4000], order[4000:5000]
    state = pretrain(images[pub], labels[pub], epochs=2, cut_layer=3, channel_epsilon=1.0, threads=2)
    net = build_model("lenet5")
    net.load_state_dict(state)
    edge, _ = split_model(net, 3)
    torch.set_num_threads(2)
    return {"edge": edge.eval(), "aux": (images[pub], labels[pub].astype(np.int64)),
            "victims": (images[vic], labels[vic].astype(np.int64))}
