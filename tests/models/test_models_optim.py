"""Our one-cycle momentum SGD is numerically torch's SGD + OneCycleLR (without their per-process costs)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fedmist.models.lenet import lenet5
from fedmist.models.optim import OneCycleSGD, one_cycle


def test_matches_torch_sgd_with_one_cycle_exactly() -> None:
    torch.manual_seed(0)
    ours, ref = lenet5(), lenet5()
    ref.load_state_dict(ours.state_dict())
    total = 40
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt_ref, max_lr=0.05, total_steps=total)
    opt = OneCycleSGD(ours.parameters(), max_lr=0.05, total_steps=total, weight_decay=5e-4)
    for step in range(total):
        group = opt_ref.param_groups[0]
        assert one_cycle(step, total, 0.05) == pytest.approx((group["lr"], group["momentum"]), rel=1e-12)
        x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        for model, optimizer in ((ref, opt_ref), (ours, opt)):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        sched.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_schedule_shape() -> None:
    lrs = [one_cycle(s, 100, 0.1)[0] for s in range(100)]
    assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) == pytest.approx(0.1)
    assert lrs.index(max(lrs)) == 29 and lrs[-1] == pytest.approx(0.1 / 25 / 1e4)


def test_missing_gradient_is_an_error() -> None:
    model = copy.deepcopy(lenet5())
    opt = OneCycleSGD(model.parameters(), max_lr=0.1, total_steps=10)
    with pytest.raises(RuntimeError, match="no gradient"):
        opt.step()
