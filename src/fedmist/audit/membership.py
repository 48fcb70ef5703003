"""Membership inference on the trained model with the loss-threshold attack (Yeom et al., 2018).

The attacker queries the final model the way it is deployed (edge -> clean bits -> cloud) with a candidate
image and its label; a low loss suggests the sample was trained on. The AUC of ``-loss`` between members
(edge images the cloud trained on) and non-members (test images) measures how much the model remembers
individual samples: 0.5 is no better than chance.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedmist.audit.metrics import roc_auc
from fedmist.models.cloud_train import input_values
from fedmist.models.extract import channel_features
from fedmist.privacy.channel import bit_lookup_table, unpack_with_table


def per_sample_loss(
    edge: nn.Module, cloud: nn.Module, images: np.ndarray, labels: np.ndarray, shape: tuple[int, ...],
    eps: float, debias: bool, batch_size: int = 1000,
) -> torch.Tensor:
    """Cross-entropy of each sample through the deployed channel, inputs scaled like the job's evaluation."""
    packed = torch.from_numpy(channel_features(edge, images))
    table = bit_lookup_table(*input_values(eps, debias, train=False))
    r = int(np.prod(shape))
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    out = []
    cloud.eval()
    with torch.inference_mode():
        for s in range(0, len(y), batch_size):
            x = unpack_with_table(packed[s : s + batch_size], r, table).reshape(-1, *shape)
            out.append(F.cross_entropy(cloud(x), y[s : s + batch_size], reduction="none"))
    return torch.cat(out)


def membership_auc(member_loss: torch.Tensor, nonmember_loss: torch.Tensor) -> float:
    """AUC of the loss-threshold attack (members should have lower loss, so the score is ``-loss``)."""
    return roc_auc(-member_loss, -nonmember_loss)
