"""Image-similarity and ranking metrics for the audit, in torch, with exact-value unit tests.

SSIM follows Wang et al. (2004) with the usual settings (11x11 Gaussian window, sigma 1.5, K1 0.01,
K2 0.03, data range 1, "valid" windows only), the convention scikit-image uses with
``gaussian_weights=True, use_sample_covariance=False``. Written here rather than imported because it is
30 lines and the audit only needs the single-scale, single-channel case.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

K1, K2 = 0.01, 0.03


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).reshape(1, 1, size, size)


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11,
                   sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of each pair of ``(N, 1, H, W)`` images -> ``(N,)`` float64."""
    if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"ssim needs two (N, 1, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < window:
        raise ValueError(f"images of {tuple(x.shape[-2:])} are smaller than the {window}x{window} SSIM window")
    w = _gaussian_window(window, sigma)
    x, y = x.to(torch.float64), y.to(torch.float64)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    var_x = F.conv2d(x * x, w) - mu_x**2
    var_y = F.conv2d(y * y, w) - mu_y**2
    cov = F.conv2d(x * y, w) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean SSIM over a batch of image pairs (1 = identical)."""
    return float(ssim_per_image(x, y, data_range).mean())


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean over images of ``10 log10(range^2 / MSE)`` in dB; identical images give ``inf``."""
    if x.shape != y.shape:
        raise ValueError(f"psnr needs tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    mse = (x.to(torch.float64) - y.to(torch.float64)).pow(2).flatten(1).mean(1)
    if bool((mse == 0).any()):
        return math.inf
    return float((10.0 * torch.log10(data_range**2 / mse)).mean())


def roc_auc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> float:
    """Area under the ROC curve: P(member score > non-member score), ties counted half (Mann-Whitney U).

    Computed from average ranks, so it is exact with ties and needs no threshold sweep.
    """
    a = torch.as_tensor(member_scores, dtype=torch.float64).flatten()
    b = torch.as_tensor(nonmember_scores, dtype=torch.float64).flatten()
    if len(a) == 0 or len(b) == 0:
        raise ValueError("roc_auc needs at least one member and one non-member score")
    scores = torch.cat([a, b])
    order = torch.argsort(scores, stable=True)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)
    avg = ends - (counts.to(torch.float64) - 1) / 2.0
    ranks[order] = avg[inverse]
    u = float(ranks[: len(a)].sum()) - len(a) * (len(a) + 1) / 2.0
    return u / (len(a) * len(b))
