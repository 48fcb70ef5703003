"""The YOLO split: edge part then cloud part reproduces the unsplit ultralytics model exactly (eval mode)."""

from __future__ import annotations

import pytest
import torch

from fedmist.models.yolo_env import prepare_ultralytics
from fedmist.models.yolo_split import check_cut, split_detection_model


@pytest.fixture(scope="module")
def yolov5n():
    prepare_ultralytics()
    from fedmist.models.yolo import build_yolo

    torch.manual_seed(0)
    return build_yolo("yolov5n.yaml", nc=10).eval()


@pytest.mark.parametrize("cut", [1, 2, 4, 5])
def test_edge_then_cloud_equals_the_unsplit_model(yolov5n, cut):
    edge, cloud = split_detection_model(yolov5n, cut)
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(cut))
    with torch.inference_mode():
        full, _ = yolov5n(x)
        split, _ = cloud(edge(x))
    assert split.shape == full.shape == (2, 4 + 10, 12 * 16 + 6 * 8 + 3 * 4)
    assert torch.equal(split, full)


def test_parts_share_the_full_models_modules_and_state_dict_names(yolov5n):
    edge, cloud = split_detection_model(yolov5n, 4)
    full = yolov5n.state_dict()
    parts = {**edge.state_dict(), **cloud.state_dict()}
    assert parts.keys() == full.keys()
    assert set(edge.state_dict()).isdisjoint(cloud.state_dict())
    assert all(k.startswith(("model.0.", "model.1.", "model.2.", "model.3.")) for k in edge.state_dict())
    assert cloud.model._modules["4"] is yolov5n.model[4]  # training the cloud trains the saved model


def test_edge_output_at_cut_4_is_the_stride_8_map(yolov5n):
    edge, _ = split_detection_model(yolov5n, 4)
    with torch.inference_mode():
        out = edge(torch.zeros(2, 3, 640, 640))
    assert tuple(out.shape) == (2, 64, 80, 80)  # yolov5n; yolov5s has 128 channels here (DESIGN's 128x80x80)


def test_a_cut_whose_cloud_needs_an_earlier_edge_output_is_refused(yolov5n):
    with pytest.raises(ValueError) as err:
        check_cut(yolov5n.model, 6)
    assert str(err.value) == ("cut_layer 6: cloud module 16 (Concat) reads the output of edge module 4, but the edge "
                              "uploads only module 5's output; choose a cut at or before 5")


@pytest.mark.parametrize("cut", [0, 25])
def test_cut_out_of_range(yolov5n, cut):
    with pytest.raises(ValueError, match=r"out of range for a model with 25 modules: use 1..24"):
        split_detection_model(yolov5n, cut)
