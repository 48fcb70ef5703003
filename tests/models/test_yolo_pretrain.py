"""fedmist.models.yolo_pretrain: a tiny offline pretraining run writes weights + the metadata load_yolo reads,
and too little data is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedmist.data.synth_detection import FASHION_CLASSES, synthesize_detection
from fedmist.models.yolo_pretrain import pretrain_yolo

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("yolo-pretrain") / "COCO"
    synthesize_detection(FMNIST, out, train=2, val=1, size=64, objects=(1, 2), seed=0)
    return out


def test_one_epoch_writes_the_weights_and_their_metadata(coco: Path, tmp_path: Path) -> None:
    epochs: list[tuple[int, dict[str, float]]] = []
    summary = pretrain_yolo(coco, tmp_path / "y.pth", epochs=1, imgsz=64, batch_size=2, threads=1, cut_layer=4,
                            on_epoch=lambda e, stats: epochs.append((e, stats)))
    assert summary["images"] == 2 and summary["path"] == str(tmp_path / "y.pth")
    assert [e for e, _ in epochs] == [1] and epochs[0][1]["loss"] > 0
    meta = json.loads((tmp_path / "y.pth.json").read_text())
    assert meta == {"architecture": "yolov5n.yaml", "nc": len(FASHION_CLASSES), "names": list(FASHION_CLASSES),
                    "imgsz": 64, "epochs": 1, "images": 2, "source": str(coco), "channel_cut_layer": 4}
    from fedmist.models.yolo import load_yolo

    loaded = load_yolo(tmp_path / "y.pth")
    assert loaded.nc == len(FASHION_CLASSES)
    state = torch.load(tmp_path / "y.pth", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in loaded.model.state_dict().items() if k in state)


def test_too_few_images_or_no_epochs_are_refused(coco: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        pretrain_yolo(coco, tmp_path / "y.pth", epochs=0, imgsz=64)
    assert str(info.value) == f"pretraining needs at least 2 training images and 1 epoch (got 2 in {coco}, 0 epochs)"
    assert not (tmp_path / "y.pth").exists()
