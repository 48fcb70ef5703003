"""Client sampling with real workers: 20 trainers as processes, 5 asked per round (fraction_fit 0.25), through
the real CLI. Each round's selection is the seeded draw (the same the unit tests pin), unselected trainers wait
connected, and the job ends with every trainer stopped cleanly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from e2e_helpers import REPO, fedmist, split_fmnist

sys.path.insert(0, str(REPO / "src"))
from fedmist.strategy import FedAvg  # noqa: E402
from fedmist.strategy.sampling import ClientSampler  # noqa: E402

pytestmark = pytest.mark.e2e

TRAINERS = 20
ROUNDS = 3


def _manifests(tmp_path: Path) -> Path:
    names = [f"edge{i}" for i in range(1, TRAINERS + 1)]
    docs: list[dict] = [{"apiVersion": "sedna.io/v1alpha1", "kind": "Dataset", "metadata": {"name": f"{n}-data"},
                         "spec": {"url": f"/data/{n}", "format": "idx", "nodeName": n}} for n in names]
    docs.append({"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "out"},
                 "spec": {"url": "/model/lenet5.pth", "format": "pth"}})
    env = {"aggregation_algorithm": "fedavg", "exit_round": str(ROUNDS), "fraction_fit": "0.25",
           "min_fit_clients": "5", "min_available_clients": str(TRAINERS), "round_timeout": "60", "seed": "5",
           "TEST_DATASET_URL": "/data/test"}
    trainer_env = [{"name": "learning_rate", "value": "0.05"}, {"name": "batch_size", "value": "32"}]
    docs.append({"apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "metadata": {"name": "many"},
                 "spec": {"aggregationWorker": {"model": {"name": "out"}, "template": {"spec": {
                     "nodeName": "cloud", "containers": [{"image": "fedmist/worker", "name": "agg",
                                                          "env": [{"name": k, "value": v} for k, v in env.items()]}]}}},
                          "trainingWorkers": [{"dataset": {"name": f"{n}-data"}, "template": {"spec": {
                              "nodeName": n, "containers": [{"image": "fedmist/worker", "name": "train",
                                                             "env": trainer_env}]}}} for n in names]}})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_twenty_trainers_five_sampled_per_round(tmp_path):
    data = split_fmnist(tmp_path / "data", ",".join(["150"] * TRAINERS), seed=4)
    job = _manifests(tmp_path)
    result = fedmist("run", "-f", str(job), "--path-map", f"/data={data}", "--path-map", f"/model={tmp_path}/model",
                     "--workdir", str(tmp_path / "run"), "--no-progress", "--timeout", "100", timeout=130)
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    history = status["metrics"]["history"]
    assert [h["round"] for h in history] == list(range(1, ROUNDS + 1))
    names = [f"edge{i}" for i in range(1, TRAINERS + 1)]
    sampler, strategy = ClientSampler(seed=5), FedAvg(fraction_fit=0.25, min_fit_clients=5)
    weights = {"w": np.zeros(1, dtype=np.float32)}
    for h in history:
        expected = sampler.configure(strategy, h["round"], weights, names).workers
        assert h["selected_workers"] == expected, h
        assert h["selected"] == 5 and h["participants"] == 5 and h["lost"] == 0 and h["late"] == 0, h
        assert h["bytes_up"] > 0 and h["accuracy"] is not None
    assert len({tuple(h["selected_workers"]) for h in history}) == ROUNDS  # a new sample each round
    workers = status["workers"]
    assert len(workers) == TRAINERS and all(w["phase"] == "Succeeded" for w in workers.values()), workers
    assert len({n for h in history for n in h["selected_workers"]}) > 5  # different trainers took turns
