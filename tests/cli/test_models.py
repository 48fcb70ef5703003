"""fedmist.cli.models: ``pretrain``, ``pretrain-yolo`` and ``predict`` pass their options to the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedmist.cli import main
from fedmist.cli.models import _cut_layer_arg


def test_a_cut_layer_is_an_index_or_a_name() -> None:
    assert _cut_layer_arg("3") == 3 and _cut_layer_arg(" 0 ") == 0 and _cut_layer_arg(" pool1 ") == "pool1"


def test_pretrain_passes_its_options_and_cut_zero_means_plain(monkeypatch, capsys) -> None:
    calls: list[tuple[Any, ...]] = []

    def pretrain(model, data, out, **kwargs):
        calls.append((model, data, out, kwargs))
        kwargs["on_epoch"](1, {"loss": 0.5})
        return Path(out)

    monkeypatch.setattr("fedmist.api.pretrain", pretrain)
    assert main(["pretrain", "--data", "/d", "--out", "/o.pth", "--cut-layer", "0", "--epochs", "2"]) == 0
    model, data, out, kwargs = calls[0]
    kwargs.pop("on_epoch")
    assert (model, data, out) == ("lenet5", "/d", "/o.pth")
    assert kwargs == {"format": None, "split": "public", "epochs": 2, "cut_layer": None, "channel_epsilon": 1.0,
                      "seed": 0, "threads": 2}
    captured = capsys.readouterr()
    assert captured.err == "pretrain epoch 1/2: loss 0.5000\n"
    assert captured.out.startswith("wrote /o.pth (2 epochs, ") and captured.out.endswith(" s)\n")


def test_pretrain_yolo_and_predict_report_what_they_wrote(monkeypatch, capsys) -> None:
    yolo: list[dict[str, Any]] = []
    monkeypatch.setattr("fedmist.models.yolo_pretrain.pretrain_yolo",
                        lambda data, out, **kw: yolo.append(kw) or {"images": 4, "seconds": 1.25})
    assert main(["pretrain-yolo", "--data", "/coco", "--out", "/y.pth"]) == 0
    assert {k: v for k, v in yolo[0].items() if k != "on_epoch"} == {
        "model": "yolov5n.yaml", "epochs": 10, "imgsz": 320, "batch_size": 16, "lr": 0.002, "seed": 0, "threads": 2,
        "cut_layer": 4}
    predicted: list[tuple[Any, ...]] = []
    monkeypatch.setattr("fedmist.models.yolo_predict.predict_images",
                        lambda model, images, out, **kw: predicted.append((model, images, out, kw))
                        or [(out / "a.png", 2), (out / "b.png", 0)])
    assert main(["predict", "/m.pth", "a.jpg", "b.jpg", "--conf", "0.5"]) == 0
    assert predicted == [("/m.pth", [Path("a.jpg"), Path("b.jpg")], Path("predictions"), {"conf": 0.5, "imgsz": None})]
    assert capsys.readouterr().out == ("wrote /y.pth (4 images, 10 epochs, 1.2 s)\n"
                                       "wrote predictions/a.png (2 boxes)\nwrote predictions/b.png (0 boxes)\n")
