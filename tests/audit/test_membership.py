"""fedmist.audit.membership: per-sample losses through the deployed channel, and the attack's AUC."""

from __future__ import annotations

import math

import torch
from tiny_world import tiny_images, tiny_parts

from fedmist.audit.membership import membership_auc, per_sample_loss


def test_lower_member_loss_is_a_successful_attack() -> None:
    assert membership_auc(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])) == 1.0
    assert membership_auc(torch.tensor([0.3, 0.4]), torch.tensor([0.1, 0.2])) == 0.0
    assert membership_auc(torch.tensor([0.1, 0.3]), torch.tensor([0.2, 0.4])) == 0.75
    assert membership_auc(torch.tensor([0.5]), torch.tensor([0.5])) == 0.5


def test_losses_are_one_per_sample_and_do_not_depend_on_the_batching() -> None:
    edge, cloud = tiny_parts()
    images, labels = tiny_images(5)
    shape = tuple(edge(torch.zeros(1, 1, 28, 28)).shape[1:])
    whole = per_sample_loss(edge, cloud, images, labels, shape, math.inf, True)
    batched = per_sample_loss(edge, cloud, images, labels, shape, math.inf, True, batch_size=2)
    assert whole.shape == (5,) and torch.isfinite(whole).all() and (whole > 0).all()
    torch.testing.assert_close(whole, batched)
    swapped = per_sample_loss(edge, cloud, images[::-1].copy(), labels[::-1].copy(), shape, math.inf, True)
    torch.testing.assert_close(swapped, whole.flip(0))
