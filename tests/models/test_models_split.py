"""LeNet-5 layout, cut resolution, splitting and the model registry."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from fedmist.models.lenet import lenet5
from fedmist.models.registry import build_model
from fedmist.models.split import resolve_cut, split_model


def test_lenet5_has_the_twelve_modules() -> None:
    model = lenet5()
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten",
                     "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert model[0].padding == (2, 2) and model[3].in_channels == 6 and model[7].in_features == 400
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert lenet5(num_classes=4)[11].out_features == 4


def test_edge_then_cloud_equals_full_model_exactly() -> None:
    torch.manual_seed(0)
    model = lenet5().eval()
    edge, cloud = split_model(model, 3)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        feats = edge(x)
        assert feats.shape == (4, 6, 14, 14)
        assert torch.equal(cloud(feats), model(x))
    assert len(edge) == 3 and len(cloud) == 9
    assert set(cloud.state_dict()) >= {"0.weight", "0.bias"}  # renumbered from 0


def test_split_parts_are_copies() -> None:
    model = lenet5()
    _, cloud = split_model(model, 3)
    with torch.no_grad():
        cloud[0].weight.zero_()
    assert model[3].weight.abs().sum() > 0


def test_resolve_cut_by_int_digit_string_and_name() -> None:
    model = lenet5()
    assert resolve_cut(model, 3) == 3
    assert resolve_cut(model, " 4 ") == 4
    named = nn.Sequential(OrderedDict([("conv1", nn.Conv2d(1, 2, 3)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
                                       ("flat", nn.Flatten())]))
    assert resolve_cut(named, "pool1") == 3  # up to and including pool1
    assert resolve_cut(named, "conv1") == 1
    edge, cloud = split_model(named, "relu1")
    assert list(dict(edge.named_children())) == ["conv1", "relu1"]
    assert list(dict(cloud.named_children())) == ["pool1", "flat"]


@pytest.mark.parametrize("cut", [0, 12, -1, "12"])
def test_resolve_cut_out_of_range_message(cut: int | str) -> None:
    with pytest.raises(ValueError) as info:
        resolve_cut(lenet5(), cut)
    message = str(info.value)
    assert "out of range" in message and "12 modules" in message and "1..11" in message
    assert "\n" not in message


def test_resolve_cut_unknown_name_lists_layers() -> None:
    with pytest.raises(ValueError, match="names no layer.*'0'"):
        resolve_cut(lenet5(), "conv9")


def test_split_needs_sequential() -> None:
    with pytest.raises(TypeError, match="nn.Sequential"):
        split_model(nn.Linear(2, 2), 1)  # type: ignore[arg-type]


def test_build_model_by_name_and_import_path() -> None:
    assert isinstance(build_model("lenet5"), nn.Sequential)
    assert build_model("LeNet5")[11].out_features == 10
    assert build_model("fedmist.models.lenet:lenet5", num_classes=3)[11].out_features == 3
    assert isinstance(build_model("torch.nn:Linear", in_features=2, out_features=1), nn.Linear)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("resnet99", "unknown model 'resnet99'.*lenet5"),
        ("no_such_pkg.models:net", "model factory 'no_such_pkg.models:net': cannot import module 'no_such_pkg.models'"),
        ("fedmist.models.lenet:missing", "'fedmist.models.lenet:missing'.*no attribute"),
        ("fedmist.models.lenet:", "must look like"),
    ],
)
def test_build_model_errors_name_the_path(name: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        build_model(name)


def test_build_model_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match="not a torch.nn.Module"):
        build_model("builtins:dict")
