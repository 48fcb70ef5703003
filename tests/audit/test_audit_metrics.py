"""Exact values for the audit's metric helpers (SSIM, PSNR, AUC), the label attack and the accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedmist.audit.judge import label_attack_accuracy
from fedmist.audit.metrics import psnr, roc_auc, ssim, ssim_per_image
from fedmist.cli.audit import parse_epsilon_list
from fedmist.privacy.accounting import label_capacity, privacy_report


def _naive_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook SSIM with explicit loops over every valid 11x11 Gaussian window (sigma 1.5)."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * a).sum(), (w * b).sum()
            vx, vy = (w * a * a).sum() - mx**2, (w * b * b).sum() - my**2
            cov = (w * a * b).sum() - mx * my
            vals.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_identical_is_one_and_constant_images_exact() -> None:
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    a, b = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.6)
    # constant images: no variance, so SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1)
    assert ssim(a, b) == pytest.approx((2 * 0.2 * 0.6 + 1e-4) / (0.04 + 0.36 + 1e-4), rel=1e-6)


def test_ssim_matches_explicit_window_loops() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((14, 13))
    y = np.clip(x + 0.2 * rng.standard_normal((14, 13)), 0, 1)
    got = ssim_per_image(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])
    assert float(got[0]) == pytest.approx(_naive_ssim(x, y), rel=1e-10)


def test_ssim_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        ssim(torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 27))
    with pytest.raises(ValueError, match="smaller than the 11x11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_psnr_exact() -> None:
    x = torch.zeros(2, 1, 4, 4)
    assert psnr(x, x + 0.5) == pytest.approx(10 * math.log10(4.0), abs=1e-12)  # MSE 0.25 -> 6.02 dB
    assert psnr(x, x + 0.25, data_range=0.5) == pytest.approx(10 * math.log10(4.0), abs=1e-12)
    assert psnr(x, x) == math.inf


def test_auc_exact_with_ties() -> None:
    assert roc_auc(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 0.0])) == 1.0
    assert roc_auc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 0.0
    # pairs: (1 vs 1) tie = 0.5, (1 vs 0) = 1, (2 vs 1) = 1, (2 vs 0) = 1 -> 3.5 / 4
    assert roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0])) == 0.875
    assert roc_auc(torch.ones(5), torch.ones(7)) == 0.5
    with pytest.raises(ValueError):
        roc_auc(torch.tensor([]), torch.ones(2))


def test_label_attack_uses_the_uploaded_label() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    true = torch.tensor([0, 2, 1])
    # labels in clear: the uploaded label is the truth, whatever the reconstruction says
    assert label_attack_accuracy(probs, true, true, None) == 1.0
    # label_epsilon 0: the uploaded label carries nothing, the reconstruction decides (1 of 3 right)
    assert label_attack_accuracy(probs, torch.tensor([2, 0, 0]), true, 0.0) == pytest.approx(1 / 3)


def test_label_accounting_exact() -> None:
    assert label_capacity(10, math.inf) == pytest.approx(math.log2(10))
    assert label_capacity(10, 0.0) == pytest.approx(0.0, abs=1e-12)
    q = math.e / (math.e + 9)
    o = (1 - q) / 9
    expected = math.log2(10) + q * math.log2(q) + 9 * o * math.log2(o)
    assert label_capacity(10, 1.0) == pytest.approx(expected, rel=1e-12)
    rep = privacy_report(2.0, 1176, label_epsilon=1.0)
    assert rep["label_keep_probability"] == pytest.approx(q) and rep["label_capacity_bits"] == pytest.approx(expected)
    clear = privacy_report(2.0, 1176)
    assert clear["label_epsilon"] is None and clear["label_capacity_bits"] == pytest.approx(math.log2(10))


def test_epsilon_list_parsing() -> None:
    assert parse_epsilon_list("inf, 8,0.5") == [math.inf, 8.0, 0.5]
    for bad, msg in (("2,abc", "'abc' must be a positive number or 'inf'"),
                     ("1,0", "'0' must be a positive number or 'inf'"), ("1,,2", "comma-separated"),
                     ("2,2", "listed twice"), ("-1", "'-1' must be a positive number or 'inf'")):
        with pytest.raises(ValueError, match=msg):
            parse_epsilon_list(bad)
