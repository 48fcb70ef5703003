"""White-box inversion: optimize an image so the edge, seen through the channel model, explains the bits.

The attacker knows the edge weights (the cloud hands them out) and the flip probability ``1 - p``. For a
candidate image ``x`` the edge's pre-threshold activations ``a`` give a relaxed bit ``s = sigmoid(a / T)``
and the probability of observing a 1 is ``p s + (1 - p)(1 - s)``. Maximizing the log-likelihood of the
observed bits ``z`` (plus a small total-variation prior, starting from the mean auxiliary image) is the
maximum-a-posteriori reconstruction under the exact channel model; no training data is needed beyond the
mean image. As ``eps -> 0`` the likelihood goes flat and the estimate stays at the prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedmist.models.split import drop_trailing_relus
from fedmist.privacy.channel import keep_probability


@dataclass
class LikelihoodConfig:
    steps: int = 150
    lr: float = 0.1
    tv_weight: float = 0.02
    batch_size: int = 500


def activation_scale(edge: nn.Module, images: torch.Tensor) -> float:
    """Standard deviation of the edge's pre-threshold activations: the unit for the temperature ``T``."""
    with torch.inference_mode():
        return float(drop_trailing_relus(edge)(images).std())


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def likelihood_attack(
    edge: nn.Module,
    observed: torch.Tensor,
    eps: float,
    prior_image: torch.Tensor,
    temperature: float,
    config: LikelihoodConfig,
) -> torch.Tensor:
    """Reconstruct ``(N, 1, H, W)`` images from observed bits ``(N, r)`` (bool) by likelihood ascent."""
    pre = drop_trailing_relus(edge).eval()
    for prm in pre.parameters():
        prm.requires_grad_(False)
    p = keep_probability(eps)
    logit0 = torch.logit(prior_image.clamp(0.02, 0.98)).reshape(1, *prior_image.shape[-3:])
    out = []
    for start in range(0, len(observed), config.batch_size):
        z = observed[start : start + config.batch_size].to(torch.float32)
        theta = logit0.repeat(len(z), 1, 1, 1).clone().requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=config.lr)
        for _ in range(config.steps):
            x = torch.sigmoid(theta)
            s = torch.sigmoid(pre(x).flatten(1) / temperature)
            p1 = (p * s + (1.0 - p) * (1.0 - s)).clamp(1e-6, 1 - 1e-6)
            nll = -(z * p1.log() + (1.0 - z) * (1.0 - p1).log()).mean()
            loss = nll + config.tv_weight * _total_variation(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out.append(torch.sigmoid(theta.detach()))
    for prm in pre.parameters():
        prm.requires_grad_(True)
    return torch.cat(out)
