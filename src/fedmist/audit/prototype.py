"""The class-prototype attack: the cloud's own classifier names each upload's class, the attacker draws that
class's mean public image.

Why the audit runs it: it needs nothing the cloud does not already have (its trained model and public data),
and it shows the part of the leak no epsilon can remove without removing the job's utility. Whenever the
cloud classifies the uploads with accuracy ``a``, this attack reconstructs them with roughly ``a`` times the
SSIM of the class means (0.36 on Fashion-MNIST given the true class) and a judge reads its pictures with
accuracy about ``a``. So "attack accuracy near chance" and "test accuracy >= 0.85" exclude each other on any
channel, and the prototype's SSIM at the job's accuracy is a floor under the best attack's SSIM.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedmist.models.cloud_train import input_values


def class_means(images: torch.Tensor, labels: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, *image_shape)``: the mean image of each class (zeros for a class with no image)."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    sums = torch.zeros((num_classes, *images.shape[1:]), dtype=torch.float64)
    sums.index_add_(0, labels, images.to(torch.float64))
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(torch.float64)
    return (sums / counts.view(-1, *([1] * (images.dim() - 1)))).to(images.dtype)


@torch.inference_mode()
def predict_uploads(cloud: nn.Module, bits: torch.Tensor, shape: tuple[int, ...], epsilon: float, debias: bool,
                    batch_size: int = 1000) -> torch.Tensor:
    """The cloud's class for each upload: ``bits`` bool ``(N, r)`` as received, fed as in training."""
    zero, one = input_values(epsilon, debias, train=True)
    was_training = cloud.training
    cloud.eval()
    out = []
    for start in range(0, len(bits), batch_size):
        x = zero + (one - zero) * bits[start:start + batch_size].to(torch.float32)
        out.append(cloud(x.reshape(-1, *shape)).argmax(1))
    cloud.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def prototype_reconstructions(means: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Each upload's "reconstruction": the mean public image of the class the cloud predicts for it."""
    return means[predicted]
