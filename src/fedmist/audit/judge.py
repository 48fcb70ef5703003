"""Scoring reconstructions: image similarity, and what a classifier trained on clean images reads from them.

The judge classifier is trained on the attacker's clean auxiliary images (the same recipe as pretraining,
without any channel), so its accuracy on reconstructions answers "can a machine tell what the victim's
image shows?"; chance is 1/k. Because MistNet uploads labels next to the bits, the attacker's accuracy at
the victim's *class* also folds in the uploaded label (exactly right unless ``label_epsilon`` applies
k-ary randomized response): :func:`label_attack_accuracy` is the Bayes decision from both.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedmist.audit.metrics import psnr, ssim
from fedmist.models.pretrain import pretrain
from fedmist.models.registry import build_model
from fedmist.privacy.channel import label_keep_probability


def train_judge(images: np.ndarray, labels: np.ndarray, model: str, epochs: int, threads: int,
                num_classes: int = 10) -> nn.Module:
    """A clean-image classifier (the job's architecture) trained on the auxiliary data."""
    state = pretrain(images, labels, model=model, epochs=epochs, threads=threads)
    net = build_model(model, num_classes=num_classes)
    net.load_state_dict(state)
    return net.eval()


def judge_probs(judge: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Softmax class probabilities ``(N, k)`` of the judge on float images in [0, 1]."""
    with torch.inference_mode():
        return torch.cat([torch.softmax(judge(images[s : s + batch_size]), 1)
                          for s in range(0, len(images), batch_size)])


def label_attack_accuracy(probs: torch.Tensor, uploaded: torch.Tensor, true: torch.Tensor,
                          label_epsilon: float | None) -> float:
    """Accuracy of the MAP class given the reconstruction's class probabilities and the uploaded label."""
    k = probs.shape[1]
    keep = 1.0 if label_epsilon is None else label_keep_probability(k, label_epsilon)
    like = torch.full_like(probs, (1.0 - keep) / (k - 1))
    like[torch.arange(len(uploaded)), uploaded] = keep
    return float(((probs * like).argmax(1) == true).to(torch.float64).mean())


def score(recon: torch.Tensor, truth: torch.Tensor, judge: nn.Module, labels: torch.Tensor) -> dict[str, float]:
    """SSIM, PSNR and the judge's accuracy on the reconstructions of one attack."""
    probs = judge_probs(judge, recon)
    return {"ssim": ssim(recon, truth), "psnr": psnr(recon, truth),
            "recon_accuracy": float((probs.argmax(1) == labels).to(torch.float64).mean())}
