"""The split protocol: Sequential models, fedmist_stages(), fedmist_split(), and the one-line refusal."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from fedmist.models.lenet import lenet5
from fedmist.models.parts import HOW_TO_SPLIT, build_job_model, split_parts


class Staged(nn.Module):
    """A non-Sequential model that names its stages (like the custom-model example's CNN)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def fedmist_stages(self) -> "OrderedDict[str, nn.Module]":
        return OrderedDict(conv=self.conv, act=self.act, flat=self.flat, fc=self.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.act(self.conv(x))))


class Residual(nn.Module):
    """A model with a skip connection: not a chain, so it splits itself."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 6)
        self.block = nn.Linear(6, 6)
        self.head = nn.Linear(6, 2)

    def fedmist_split(self, cut: int) -> tuple[nn.Module, nn.Module]:
        if cut != 1:
            raise ValueError("only cut 1 (after the stem) is supported")
        model = self

        class Cloud(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.block, self.head = model.block, model.head

            def forward(self, h: torch.Tensor) -> torch.Tensor:
                return self.head(h + self.block(h))

        return self.stem, Cloud()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(h + self.block(h))


class Opaque(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_sequential_lenet_split_is_the_existing_copying_split() -> None:
    model = lenet5()
    parts = split_parts(model, 3)
    assert parts.cut == 3 and len(parts.edge) == 3 and len(parts.cloud) == 9
    assert set(parts.full_state()) == set(model.state_dict())  # merged back to the full model's keys
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(parts.cloud(parts.edge(x)), model(x))


def test_stages_are_cut_by_index_or_name_and_share_the_models_parameters() -> None:
    torch.manual_seed(0)
    model = Staged()
    x = torch.rand(3, 3, 8, 8)
    parts = split_parts(model, "act")  # up to and including 'act'
    assert parts.cut == 2 and list(dict(parts.edge.named_children())) == ["conv", "act"]
    assert torch.allclose(parts.cloud(parts.edge(x)), model(x))
    with torch.no_grad():
        parts.cloud.fc.weight.add_(1.0)  # training the cloud part trains the model itself
    assert torch.equal(parts.full_state()["fc.weight"], model.fc.weight)
    assert set(parts.full_state()) == set(model.state_dict())  # the user's own keys, loadable into the class
    assert split_parts(Staged(), 3).cut == 3


def test_custom_split_returns_the_models_own_parts() -> None:
    model = Residual()
    parts = split_parts(model, 1)
    x = torch.rand(4, 6)
    assert torch.allclose(parts.cloud(parts.edge(x)), model(x))
    assert parts.edge is model.stem and set(parts.full_state()) == set(model.state_dict())


@pytest.mark.parametrize(("model", "cut", "message"), [
    (Opaque(), 1, f"model (Opaque) cannot be split for MistNet: {HOW_TO_SPLIT}"),
    (Staged(), 9, "cut_layer 9 is out of range for a model with 4 modules: use 1..3 (index of the first cloud "
                  "module) so that both parts are non-empty"),
    (Staged(), "conv9", "cut_layer 'conv9' names no layer of the model; layers are ['conv', 'act', 'flat', 'fc']"),
    (Residual(), 2, "cut_layer 2: model.fedmist_split: only cut 1 (after the stem) is supported"),
    (Residual(), "stem", "cut_layer 'stem': model is split by fedmist_split(), which takes an integer cut_layer"),
])
def test_models_that_cannot_be_cut_get_one_line(model: nn.Module, cut: int | str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        split_parts(model, cut)
    assert str(info.value) == message


def _no_args() -> nn.Module:
    return nn.Linear(2, 3)


def _returns_int(num_classes: int = 10) -> int:
    return num_classes


def test_build_job_model_passes_num_classes_only_when_taken_and_checks_the_type() -> None:
    assert build_job_model("fedmist.models.lenet:lenet5", num_classes=4)[11].out_features == 4
    assert isinstance(build_job_model(f"{__name__}:_no_args", num_classes=4), nn.Linear)
    with pytest.raises(ValueError) as info:
        build_job_model(f"{__name__}:_returns_int")
    assert str(info.value) == f"model factory '{__name__}:_returns_int' returned int, not a torch.nn.Module"
    with pytest.raises(ValueError, match=r"cannot import module 'no_such_pkg' \(No module named 'no_such_pkg'\)"):
        build_job_model("no_such_pkg:net")
