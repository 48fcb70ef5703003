"""YOLO MistNet detection jobs end to end: the real CLI makes a synthetic COCO-layout set and a pretrained
yolov5n, runs the job as processes (websocket, and S3 like the seed), and predicts with the result."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from e2e_helpers import FMNIST, fedmist, run_job

pytestmark = pytest.mark.e2e

IMGSZ = 160
# yolov5n cut 4 at 160 px: 64 x 20 x 20 bits = 3,200 bytes, + 1,000 bytes of box slots + 1 count byte
RECORD = 3200 + 1000 + 1


@pytest.fixture(scope="session")
def yolo_tiny(tmp_path_factory) -> dict[str, Path]:
    """Two edges with 16 images each, a 16-image validation set, and a yolov5n pretrained for one epoch on 8
    other (public) images beside the validation split."""
    root = tmp_path_factory.mktemp("yolo")
    for name, train, val, seed in (("1/COCO", 16, 0, 1), ("2/COCO", 16, 0, 2), ("val", 8, 16, 3)):
        made = fedmist("data", "synth-detection", "--source", str(FMNIST), "--out", str(root / "data" / name),
                       "--train", str(train), "--val", str(val), "--size", str(IMGSZ), "--seed", str(seed))
        assert made.returncode == 0, made.stderr
    pre = fedmist("pretrain-yolo", "--data", str(root / "data" / "val"), "--out", str(root / "pre" / "yolov5.pth"),
                  "--model", "yolov5n.yaml", "--imgsz", str(IMGSZ), "--epochs", "1", timeout=300)
    assert pre.returncode == 0, pre.stderr
    return {"data": root / "data", "pretrained": root / "pre"}


def _job(tmp_path: Path, transmitter: dict | None = None, extra_docs: list | None = None,
         test_dataset: bool = True) -> Path:
    def worker(dataset: str, node: str) -> dict:
        env = [{"name": "aggregation_algorithm", "value": "mistnet"}, {"name": "epsilon", "value": "100"},
               {"name": "epochs", "value": "1"}, {"name": "learning_rate", "value": "0.001"}]
        return {"dataset": {"name": dataset}, "template": {"spec": {"nodeName": node, "containers": [
            {"image": "x", "name": "train-worker", "env": env}]}}}

    agg_env = {"cut_layer": "4", "epsilon": "100", "aggregation_algorithm": "mistnet", "batch_size": "16",
               "epochs": "3", "imgsz": str(IMGSZ), **({"TEST_DATASET_URL": "/data/val"} if test_dataset else {})}
    docs = [
        {"apiVersion": "sedna.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "coco-1"},
         "spec": {"url": "/data/1/COCO", "format": "dir", "nodeName": "edge1"}},
        {"apiVersion": "sedna.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "coco-2"},
         "spec": {"url": "/data/2/COCO", "format": "dir", "nodeName": "edge2"}},
        {"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "out"},
         "spec": {"url": "/model/yolov5.pth", "format": "pth"}},
        {"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "pre"},
         "spec": {"url": "/pretrained/yolov5.pth", "format": "pth"}},
        {"apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "metadata": {"name": "yolo-tiny"},
         "spec": {"pretrainedModel": {"name": "pre"}, **({"transmitter": transmitter} if transmitter else {}),
                  "aggregationWorker": {"model": {"name": "out"}, "template": {"spec": {"nodeName": "cloud", "containers": [
                      {"image": "x", "name": "agg", "env": [{"name": k, "value": v} for k, v in agg_env.items()]}]}}},
                  "trainingWorkers": [worker("coco-1", "edge1"), worker("coco-2", "edge2")]}},
        *(extra_docs or []),
    ]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _run(job: Path, data: dict[str, Path], tmp_path: Path) -> tuple:
    return run_job(job, data, tmp_path, timeout=420)


def test_detection_job_succeeds_with_map_history_model_and_predictions(yolo_tiny, tmp_path):
    result, status = _run(_job(tmp_path), yolo_tiny, tmp_path)
    assert result.returncode == 0, (status.get("conditions"), result.stderr[-3000:])
    assert status["phase"] == "Succeeded"
    metrics = status["metrics"]
    assert all(math.isfinite(metrics[k]) and 0.0 <= metrics[k] <= 1.0 for k in ("mAP50", "mAP50-95")), metrics
    history = metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"], history  # the cloud layers learn from the bits
    assert metrics["privacy"]["features_per_sample"] == 64 * 20 * 20
    assert metrics["device"] == "cpu"  # the cloud trained on the job's device (cpu by default)
    for name in ("edge1", "edge2"):
        worker = status["workers"][name]
        assert worker["phase"] == "Succeeded" and worker["samples"] == 16
        assert 16 * RECORD <= worker["bytes_up"] <= 16 * RECORD + 4000, worker
    edge_log = (tmp_path / "run" / "logs" / "edge1.log").read_text()
    assert edge_log.count("epochs=1, learning_rate=0.001 set on this edge do not apply to MistNet") == 1
    meta = json.loads((tmp_path / "model" / "yolov5.pth.json").read_text())
    assert (meta["task"], meta["architecture"], meta["cut_layer"], meta["imgsz"], meta["nc"]) == (
        "detect", "yolov5n.yaml", 4, IMGSZ, 10)
    assert (tmp_path / "model" / "yolov5-ultralytics.pt").is_file()

    image = next((yolo_tiny["data"] / "val" / "images" / "val").iterdir())
    pred = fedmist("predict", str(tmp_path / "model" / "yolov5.pth"), str(image), "--out", str(tmp_path / "pred"),
                   "--conf", "0.001")
    assert pred.returncode == 0, pred.stderr
    png = tmp_path / "pred" / f"{image.stem}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detection_job_over_s3_like_the_seed(yolo_tiny, tmp_path, s3_server):
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "mysecret", "annotations": {"s3-endpoint": s3_server.removeprefix("http://"),
                                                               "s3-usehttps": "0"}},
              "stringData": {"ACCESS_KEY_ID": "testing", "SECRET_ACCESS_KEY": "testing"}}
    job = _job(tmp_path, {"ws": {}, "s3": {"aggDataPath": "s3://sedna/fl/aggregation_data",
                                           "credentialName": "mysecret"}}, [secret], test_dataset=False)
    result, status = _run(job, yolo_tiny, tmp_path)
    assert result.returncode == 0, (status.get("conditions"), result.stderr[-3000:])
    # like the seed, no TEST_DATASET_URL: the cloud evaluates on the val split beside its public pretraining set
    assert status["phase"] == "Succeeded" and math.isfinite(status["metrics"]["mAP50"])
    cloud_log = (tmp_path / "run" / "logs" / "cloud.log").read_text()
    assert "evaluating on the val split of the pretraining set" in cloud_log
    assert "via s3" in (tmp_path / "run" / "logs" / "edge2.log").read_text()
    for name in ("edge1", "edge2"):
        assert 16 * RECORD <= status["workers"][name]["bytes_up"] <= 16 * RECORD + 4000
