"""FedAvg on YOLO end to end: examples/yolov5-coco128-fedavg/job.yaml (shrunk: yolov5n, 64 px, 2 rounds) run by
the real CLI as processes over wss; the aggregator tests mAP each round and saves a state dict and an
ultralytics checkpoint that ``ultralytics.YOLO`` loads and predicts with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from e2e_helpers import FMNIST, fedmist, run_job

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yolov5-coco128-fedavg" / "job.yaml"
IMGSZ = 64
SMALL = {"model": "yolov5n", "imgsz": str(IMGSZ), "exit_round": "2", "batch_size": "4", "round_timeout": "120"}
NODES = {"$CLOUD_NODE": "cloud", "$EDGE1_NODE": "edge1", "$EDGE2_NODE": "edge2"}


@pytest.fixture(scope="module")
def coco_tiny(tmp_path_factory) -> dict[str, Path]:
    """Two edges of 6 images each and an 8-image validation set, 3 classes, in the seed's folder layout."""
    root = tmp_path_factory.mktemp("yolo-fedavg")
    for name, train, val, seed in (("1/COCO", 6, 0, 1), ("2/COCO", 6, 0, 2), ("val", 1, 8, 3)):
        made = fedmist("data", "synth-detection", "--source", str(FMNIST), "--out", str(root / "data" / name),
                       "--train", str(train), "--val", str(val), "--size", str(IMGSZ), "--seed", str(seed),
                       "--classes", "1,8,7")
        assert made.returncode == 0, made.stderr
    return {"data": root / "data", "pretrained": root / "unused"}


def small_job(tmp_path: Path, **overrides: str) -> Path:
    """The example with its node variables filled and the aggregator's env shrunk to test size."""
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    job = docs[-1]
    env = job["spec"]["aggregationWorker"]["template"]["spec"]["containers"][0]["env"]
    settings = {**{e["name"]: e["value"] for e in env}, **SMALL, **overrides}
    job["spec"]["aggregationWorker"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": k, "value": v} for k, v in settings.items()]
    text = yaml.safe_dump_all(docs, sort_keys=False)
    for var, node in NODES.items():
        text = text.replace(var, node)
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_fedavg_yolo_job_tests_map_each_round_and_saves_a_model_ultralytics_loads(coco_tiny, tmp_path):
    result, status = run_job(small_job(tmp_path), coco_tiny, tmp_path, timeout=300)
    assert result.returncode == 0, (status.get("conditions"), result.stderr[-3000:])
    assert status["phase"] == "Succeeded"
    metrics = status["metrics"]
    history = metrics["history"]
    assert [h["round"] for h in history] == [1, 2]
    assert all(h["participants"] == 2 for h in history), history
    for key in ("mAP50", "mAP50-95"):
        assert all(0.0 <= h[f"test_{key}"] <= 1.0 for h in history), history
        assert metrics[key] == history[-1][f"test_{key}"]
    assert metrics["device"] == "cpu"
    assert all(status["workers"][w]["device"] == "cpu" and status["workers"][w]["samples"] == 6
               for w in ("edge1", "edge2")), status["workers"]
    model = tmp_path / "model" / "yolov5.pth"
    meta = json.loads(Path(f"{model}.json").read_text())
    assert (meta["task"], meta["architecture"], meta["imgsz"], meta["nc"], meta["names"]) == (
        "detect", "yolov5n.yaml", IMGSZ, 3, ["Trouser", "Bag", "Sneaker"])
    ultra = tmp_path / "model" / "yolov5-ultralytics.pt"
    # ultralytics itself loads the checkpoint and predicts on a validation image
    from fedmist.models.yolo_env import prepare_ultralytics

    ultralytics = prepare_ultralytics()
    image = sorted((coco_tiny["data"] / "val" / "images" / "val").iterdir())[0]
    found = ultralytics.YOLO(str(ultra)).predict(str(image), imgsz=IMGSZ, conf=0.0001, verbose=False)[0]
    assert found.names == {0: "Trouser", 1: "Bag", 2: "Sneaker"} and len(found.boxes) > 0

    # fedmist predict with that export on the photographs ultralytics ships: PNGs of the photos' size, with boxes
    photos = sorted((Path(ultralytics.__file__).parent / "assets").glob("*.jpg"))
    assert [p.name for p in photos] == ["bus.jpg", "zidane.jpg"]
    pred = fedmist("predict", str(ultra), *map(str, photos), "--out", str(tmp_path / "pred"), "--imgsz", str(IMGSZ),
                   "--conf", "0.0001")
    assert pred.returncode == 0, pred.stderr[-2000:]
    from PIL import Image

    for photo in photos:
        drawn = tmp_path / "pred" / f"{photo.stem}.png"
        assert f"wrote {drawn} (" in pred.stdout and f"wrote {drawn} (0 boxes)" not in pred.stdout, pred.stdout
        with Image.open(drawn) as out, Image.open(photo) as original:
            assert out.size == original.size


def test_a_cuda_device_the_machine_lacks_is_a_one_line_configuration_error(coco_tiny, tmp_path):
    result, status = run_job(small_job(tmp_path, device="cuda:99"), coco_tiny, tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "device cuda:99: " in result.stderr
    assert "Traceback" not in result.stderr
