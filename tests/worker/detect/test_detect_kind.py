"""The seed's job has no ``model`` env: its workers must still pick the YOLO detection runtime, from the
pretrained file (aggregator) and the COCO-layout dataset (edges); LeNet jobs keep the classification one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedmist.models.weights import save_weights
from fedmist.spec import load_manifests, resolve_job
from fedmist.worker.context import WorkerContext
from fedmist.worker.detect.kind import mistnet_family
from fedmist.worker.detect.trainer import EDGE_IGNORED

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "yolov5-coco128-mistnet" / "job.yaml"


def _yolo_head_state() -> dict[str, torch.Tensor]:
    # the key that marks a YOLO detection head; a real yolov5 state dict has it at model.24
    return {"model.0.conv.weight": torch.zeros(16, 3, 6, 6), "model.24.cv3.0.2.weight": torch.zeros(80, 64, 1, 1)}


@pytest.fixture()
def seed_job(tmp_path):
    coco = tmp_path / "data" / "1" / "COCO" / "coco128" / "images" / "train2017"
    coco.mkdir(parents=True)
    (tmp_path / "data" / "2" / "COCO" / "images" / "train").mkdir(parents=True)
    save_weights(_yolo_head_state(), tmp_path / "pre" / "yolov5.pth")
    bundle = load_manifests([EXAMPLE], {"/data": str(tmp_path / "data"), "/model": str(tmp_path / "model"),
                                        "/pretrained": str(tmp_path / "pre")})
    return resolve_job(bundle, environ={})


def _ctx(job, worker) -> WorkerContext:
    return WorkerContext.from_env(worker.role, job.worker_env(worker, agg_ip="127.0.0.1"))


def test_seed_workers_run_the_detection_runtime(seed_job):
    assert [mistnet_family(_ctx(seed_job, w)) for w in seed_job.workers] == ["mistnet-detect"] * 3


def test_seed_edges_epochs_and_learning_rate_are_reported_as_not_applying(seed_job):
    params = _ctx(seed_job, seed_job.trainers[0]).params
    assert {name: getattr(params, name) for name in EDGE_IGNORED} == {"epochs": 1, "learning_rate": 0.001}


def test_lenet_pretrained_file_keeps_classification(seed_job, tmp_path):
    from fedmist.models.lenet import lenet5

    save_weights(lenet5().state_dict(), tmp_path / "pre" / "yolov5.pth")
    assert mistnet_family(_ctx(seed_job, seed_job.aggregator)) == "mistnet"


def test_explicit_model_env_wins(seed_job):
    env = seed_job.worker_env(seed_job.trainers[0], agg_ip="127.0.0.1")
    assert mistnet_family(WorkerContext.from_env("trainer", {**env, "model": "lenet5"})) == "mistnet"
    env = seed_job.worker_env(seed_job.aggregator, agg_ip="127.0.0.1")
    assert mistnet_family(WorkerContext.from_env("aggregator", {**env, "MODEL": "yolov5n.yaml",
                                                                 "PRETRAINED_MODEL_URL": ""})) == "mistnet-detect"


def test_idx_edges_stay_classification(tmp_path):
    env = {"JOB_NAME": "j", "TRAIN_DATASET_URL": str(tmp_path), "DATASET_FORMAT": "idx",
           "aggregation_algorithm": "mistnet", "epsilon": "2"}
    assert mistnet_family(WorkerContext.from_env("trainer", env)) == "mistnet"


def test_a_missing_dir_dataset_goes_to_the_detection_loader(tmp_path):
    env = {"JOB_NAME": "j", "TRAIN_DATASET_URL": str(tmp_path / "absent"), "DATASET_FORMAT": "dir",
           "aggregation_algorithm": "mistnet", "epsilon": "2"}
    assert mistnet_family(WorkerContext.from_env("trainer", env)) == "mistnet-detect"
