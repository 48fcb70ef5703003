"""Loading YOLO weights: ultralytics checkpoints and plain state dicts, through an allowlist, never random-init."""

from __future__ import annotations

import fractions
from pathlib import Path

import pytest
import torch

from fedmist.models.weights import save_weights
from fedmist.models.yolo_env import prepare_ultralytics


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    prepare_ultralytics()
    from fedmist.models import yolo

    return yolo


@pytest.fixture(scope="module")
def net(yolo):
    torch.manual_seed(1)
    return yolo.build_yolo("yolov5n.yaml", nc=3).eval()


def _same_outputs(a, b) -> bool:
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return torch.equal(a.eval()(x)[0], b.eval()(x)[0])


def test_ultralytics_checkpoint_round_trip(yolo, net, tmp_path):
    path = yolo.save_ultralytics_checkpoint(net, tmp_path / "u.pt", ["a", "b", "c"], {"imgsz": 64})
    loaded = yolo.load_yolo(path)
    assert (loaded.cfg, loaded.nc, loaded.names) == ("yolov5n.yaml", 3, ["a", "b", "c"])
    assert _same_outputs(net, loaded.model)
    assert yolo.looks_like_yolo_file(path)


def test_ultralytics_itself_loads_the_checkpoint_for_prediction(yolo, net, tmp_path):
    from ultralytics import YOLO

    path = yolo.save_ultralytics_checkpoint(net, tmp_path / "u.pt", ["a", "b", "c"], {"imgsz": 64})
    results = YOLO(str(path)).predict(torch.rand(1, 3, 64, 64), verbose=False)
    assert results[0].names == {0: "a", 1: "b", 2: "c"}


def test_state_dict_with_metadata(yolo, net, tmp_path):
    path = save_weights(net.state_dict(), tmp_path / "s.pth")
    Path(f"{path}.json").write_text('{"architecture": "yolov5n.yaml", "names": ["x", "y", "z"]}')
    loaded = yolo.load_yolo(path)
    assert (loaded.cfg, loaded.nc, loaded.names) == ("yolov5n.yaml", 3, ["x", "y", "z"])
    assert _same_outputs(net, loaded.model)
    assert yolo.looks_like_yolo_file(path)


def test_state_dict_of_another_architecture_is_a_clear_error(yolo, net, tmp_path):
    path = save_weights(net.state_dict(), tmp_path / "s.pth")
    with pytest.raises(ValueError, match=r"s.pth does not fit yolov5s.yaml: .*size mismatch"):
        yolo.load_yolo(path, "yolov5s.yaml")


def test_missing_file_is_an_error_not_random_init(yolo, tmp_path):
    with pytest.raises(FileNotFoundError, match="refusing to fall back to random initialisation"):
        yolo.load_yolo(tmp_path / "absent.pth")


def test_checkpoint_naming_a_class_outside_ultralytics_and_torch_is_refused(yolo, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": fractions.Fraction(1, 3)}, path)
    with pytest.raises(ValueError, match=r"refusing to load 'fractions.Fraction'"):
        yolo.safe_load_checkpoint(path)


def test_a_lenet_state_dict_is_not_taken_for_yolo(yolo, tmp_path):
    from fedmist.models.lenet import lenet5

    path = save_weights(lenet5().state_dict(), tmp_path / "lenet.pth")
    assert not yolo.looks_like_yolo_file(path)


def test_the_allowlist_is_exactly_what_yolov5_checkpoints_name(yolo, tmp_path):
    """Not one class wider than needed: every class a fresh YOLOv5 checkpoint (n, s, P6) names, and no other."""
    named: set[str] = set()
    for cfg in ("yolov5n.yaml", "yolov5s.yaml", "yolov5n6.yaml"):
        path = yolo.save_ultralytics_checkpoint(yolo.build_yolo(cfg, nc=3), tmp_path / f"{cfg}.pt", ["a", "b", "c"],
                                                {"imgsz": 64})
        named |= set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        assert yolo.load_yolo(path).nc == 3
    assert named == yolo.YOLOV5_CHECKPOINT_CLASSES


@pytest.mark.parametrize("make", [
    lambda: torch.nn.Linear(2, 2),  # a torch.nn.Module the list lacks
    lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.GELU()),  # one outsider among allowed layers
    lambda: __import__("ultralytics.nn.modules.block", fromlist=["C2f"]).C2f(4, 4),  # an ultralytics class outside
])
def test_a_checkpoint_naming_a_torch_or_ultralytics_class_outside_the_allowlist_is_refused(yolo, tmp_path, make):
    path = tmp_path / "odd.pt"
    model = make()
    torch.save({"model": model}, path)
    outsider = next(n for n in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
                    if n not in yolo.YOLOV5_CHECKPOINT_CLASSES)
    with pytest.raises(ValueError) as refused:
        yolo.load_yolo(path)
    assert str(refused.value) == (f"refusing to load {outsider!r}: a YOLOv5 checkpoint may only reference the classes "
                                  "of fedmist.models.yolo.YOLOV5_CHECKPOINT_CLASSES and plain data types")
