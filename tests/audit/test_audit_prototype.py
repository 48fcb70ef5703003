"""The class-prototype attack: exact class means, the cloud's predictions on uploads as they were trained on,
and the verdict's floor (what the cloud's classifier leaks wherever the job is accurate enough)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fedmist.audit.frontier import _verdict_text, choose_epsilon
from fedmist.audit.prototype import class_means, predict_uploads, prototype_reconstructions


def test_class_means_are_exact_and_an_empty_class_is_zero() -> None:
    images = torch.tensor([[[[1.0]]], [[[3.0]]], [[[10.0]]]])  # (3, 1, 1, 1)
    means = class_means(images, np.array([0, 0, 2]), num_classes=3)
    assert means.flatten().tolist() == [2.0, 0.0, 10.0]
    assert prototype_reconstructions(means, torch.tensor([2, 0])).flatten().tolist() == [10.0, 2.0]


class _FirstBitClassifier(nn.Module):
    """Class 1 when the first input value is above the midpoint of the two values it was trained to see."""

    def __init__(self, midpoint: float) -> None:
        super().__init__()
        self.midpoint = midpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x.flatten(1)[:, 0]
        return torch.stack([self.midpoint - first, first - self.midpoint], dim=1)


def test_predictions_see_uploads_as_training_did() -> None:
    """With debiasing a 0 bit is fed as -q/(p-q) and a 1 bit as (1-q)/(p-q): the midpoint is 0.5 either way."""
    bits = torch.tensor([[True, False], [False, True], [True, True]])
    for eps in (math.inf, 1.0):
        predicted = predict_uploads(_FirstBitClassifier(0.5), bits, (2,), eps, debias=True)
        assert predicted.tolist() == [1, 0, 1]


def _row(eps: float, acc: float, proto_acc: float, proto_ssim: float, attack_ssim: float, attack_acc: float) -> dict:
    return {"series": "job", "epsilon": eps, "test_accuracy": acc, "attack_ssim": attack_ssim,
            "attack_accuracy": attack_acc, "prototype": {"ssim": proto_ssim, "recon_accuracy": proto_acc}}


def test_verdict_names_the_prototype_floor_where_the_job_is_useful() -> None:
    result = {"baselines": {"chance_accuracy": 0.1},
              "rows": [_row(2.0, 0.87, 0.86, 0.33, 0.62, 0.79), _row(1.0, 0.855, 0.84, 0.31, 0.50, 0.74),
                       _row(0.1, 0.11, 0.10, 0.13, 0.13, 0.14)]}
    verdict = choose_epsilon(result)
    assert verdict["epsilon"] == 0.1 and verdict["satisfied"] is False
    assert verdict["prototype_floor"] == {"epsilon": 1.0, "test_accuracy": 0.855, "ssim": 0.31,
                                          "attack_accuracy": 0.84}
    text = _verdict_text(verdict)
    assert "already reaches SSIM 0.310 and attack accuracy 0.840 (eps 1.0, test accuracy 0.8550)" in text
