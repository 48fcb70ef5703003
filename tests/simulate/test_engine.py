"""``--partition job``'s plan: one client per trainer, named as its worker, with its own env, and the torch threads
``fedmist run`` would give it (float32 training differs in its last bits between thread counts)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fedmist.launch.local import thread_budget
from fedmist.simulate.engine import SimulationOptions, make_plan
from fedmist.spec.job import resolve_job
from fedmist.spec.load import load_manifests


def _job(tmp_path: Path, trainers: int = 3):
    names = [f"edge{i}" for i in range(1, trainers + 1)]
    docs = [{"apiVersion": "sedna.io/v1alpha1", "kind": "Dataset", "metadata": {"name": f"{n}-data"},
             "spec": {"url": f"/data/{n}", "format": "idx", "nodeName": n}} for n in names]
    docs.append({"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "out"},
                 "spec": {"url": "/model/m.pth", "format": "pth"}})
    agg = {"nodeName": "cloud", "containers": [{"image": "w", "env": [{"name": "aggregation_algorithm",
                                                                       "value": "fedavg"}]}]}
    trainers = [{"dataset": {"name": f"{n}-data"}, "template": {"spec": {"nodeName": n, "containers": [
        {"image": "w", "env": [{"name": "batch_size", "value": str(8 * (i + 1))}]}]}}} for i, n in enumerate(names)]
    docs.append({"apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "metadata": {"name": "j"},
                 "spec": {"aggregationWorker": {"model": {"name": "out"}, "template": {"spec": agg}},
                          "trainingWorkers": trainers}})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return resolve_job(load_manifests([path]))


def test_job_plan_is_one_client_per_trainer_with_its_env_and_run_s_threads(tmp_path):
    options = SimulationOptions(clients=3, workdir=tmp_path, scheme="job", overrides={"seed": "4"})
    plan = make_plan(_job(tmp_path), options)
    assert plan.names == ["edge1", "edge2", "edge3"]
    assert plan.spec.named_env["edge2"] == {"batch_size": "16", "seed": "4"}
    assert [Path(url).name for url, _ in plan.spec.datasets] == plan.names
    assert (plan.eval_threads, plan.spec.threads) == thread_budget(3)
    virtual = make_plan(_job(tmp_path), SimulationOptions(clients=5, workdir=tmp_path))
    assert virtual.names[:2] == ["client0", "client1"] and virtual.spec.named_env == {}
    assert virtual.spec.threads == 1 and virtual.eval_threads is None


def test_job_plan_refuses_data_of_its_own(tmp_path):
    with pytest.raises(ValueError, match="--partition job trains each trainer on its own dataset"):
        make_plan(_job(tmp_path), SimulationOptions(clients=3, workdir=tmp_path, scheme="job", data=(("/x", "idx"),)))
