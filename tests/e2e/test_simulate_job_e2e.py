"""``fedmist simulate --partition job`` is the real job's computation: one small FedAvg job (LeNet-5, four
trainers of 400 real Fashion-MNIST images each, two sampled per round, three rounds, a fixed seed) run by
``fedmist run`` -- five processes over sockets -- and by ``fedmist simulate`` with the job partition, both
through the real CLI. The two runs must select the same trainers each round, reach the same test accuracy each
round and save the same final weights.

The trainers' envs differ on purpose (batch size, epochs, a held-out validation split, their own seed), so the
simulation passes only if each client resolves its round exactly as its real trainer does.

Tolerances: accuracies equal to 1e-4 (one test image in 10,000). Weights within 1e-6 absolute: with two results
per round the float32 weighted sum is ``w1*a + w2*b`` in either fold order, and addition of two terms is
commutative in IEEE arithmetic, so the runs agree bit for bit today; the tolerance leaves room for a
third client per round, where the arrival order of the real run may change the last bit of a float32 sum.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from e2e_helpers import REPO, fedmist, split_fmnist

sys.path.insert(0, str(REPO / "src"))
from fedmist.models.weights import load_weights  # noqa: E402
from fedmist.strategy import FedAvg  # noqa: E402
from fedmist.strategy.sampling import ClientSampler  # noqa: E402

pytestmark = pytest.mark.e2e

NAMES = ["edge1", "edge2", "edge3", "edge4"]
ROUNDS = 3
#: each trainer's own env: what the simulation must honour per client, as each real trainer does
TRAINER_ENV = {
    "edge1": {"learning_rate": "0.05"},
    "edge2": {"learning_rate": "0.05", "batch_size": "16"},
    "edge3": {"learning_rate": "0.05", "epochs": "2", "seed": "3"},
    "edge4": {"learning_rate": "0.05", "validation_split": "0.1"},
}


@pytest.fixture(scope="module")
def four_edges(tmp_path_factory) -> Path:
    """edge1..edge4 of 400 real Fashion-MNIST images each and the 10k test set (``fedmist data split``)."""
    return split_fmnist(tmp_path_factory.mktemp("four") / "data", ",".join(["400"] * len(NAMES)), seed=7)


def _manifests(tmp_path: Path, **agg_env: str) -> Path:
    docs: list[dict] = [{"apiVersion": "sedna.io/v1alpha1", "kind": "Dataset", "metadata": {"name": f"{n}-data"},
                         "spec": {"url": f"/data/{n}", "format": "idx", "nodeName": n}} for n in NAMES]
    docs.append({"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "out"},
                 "spec": {"url": "/model/lenet5.pth", "format": "pth"}})
    env = {"aggregation_algorithm": "fedavg", "exit_round": str(ROUNDS), "fraction_fit": "0.5", "min_fit_clients": "2",
           "min_available_clients": str(len(NAMES)), "round_timeout": "60", "seed": "5",
           "TEST_DATASET_URL": "/data/test", **agg_env}
    docs.append({"apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "metadata": {"name": "twin"},
                 "spec": {"aggregationWorker": {"model": {"name": "out"}, "template": {"spec": {
                     "nodeName": "cloud", "containers": [{"image": "fedmist/worker", "name": "agg",
                                                          "env": [{"name": k, "value": v} for k, v in env.items()]}]}}},
                          "trainingWorkers": [{"dataset": {"name": f"{n}-data"}, "template": {"spec": {
                              "nodeName": n, "containers": [{"image": "fedmist/worker", "name": "train", "env": [
                                  {"name": k, "value": v} for k, v in TRAINER_ENV[n].items()]}]}}} for n in NAMES]}})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _both(tmp_path: Path, data: Path, job: Path) -> tuple[list[dict], list[dict], dict, dict]:
    """``fedmist run`` and ``fedmist simulate --partition job`` of ``job``: both histories and final weights."""
    maps = ["-f", str(job), "--path-map", f"/data={data}"]
    real = fedmist("run", *maps, "--path-map", f"/model={tmp_path / 'real-model'}", "--workdir",
                   str(tmp_path / "real"), "--no-progress", "--timeout", "100", timeout=130)
    assert real.returncode == 0, real.stderr[-3000:]
    sim = fedmist("simulate", *maps, "--path-map", f"/model={tmp_path / 'sim-model'}", "--workdir",
                  str(tmp_path / "sim"), "--partition", "job", "--workers", "2", timeout=130)
    assert sim.returncode == 0, sim.stderr[-3000:]
    assert f"{len(NAMES)} clients, partition job, {400 * len(NAMES)} samples (400..400 per client)" in sim.stderr
    histories = [json.loads((tmp_path / run / "status.json").read_text())["metrics"]["history"]
                 for run in ("real", "sim")]
    weights = [load_weights(tmp_path / model / "lenet5.pth") for model in ("real-model", "sim-model")]
    return histories[0], histories[1], weights[0], weights[1]


def _assert_same_job(real: list[dict], sim: list[dict], real_weights: dict, sim_weights: dict) -> None:
    assert [h["round"] for h in real] == [h["round"] for h in sim] == list(range(1, len(real) + 1))
    for r, s in zip(real, sim):
        assert r["selected_workers"] == s["selected_workers"], (r, s)
        assert r["participants"] == s["participants"] == 2 and r["lost"] == 0 and r["late"] == 0, r
        assert abs(r["accuracy"] - s["accuracy"]) < 1e-4, (r["round"], r["accuracy"], s["accuracy"])
        assert abs(r["loss"] - s["loss"]) < 1e-4, (r["round"], r["loss"], s["loss"])
    assert sorted(real_weights) == sorted(sim_weights)
    for key, value in real_weights.items():
        np.testing.assert_allclose(sim_weights[key].numpy(), value.numpy(), rtol=0, atol=1e-6, err_msg=key)


def test_simulating_the_job_partition_is_the_real_fedavg_job(four_edges, tmp_path):
    real, sim, real_weights, sim_weights = _both(tmp_path, four_edges, _manifests(tmp_path))
    sampler, strategy = ClientSampler(seed=5), FedAvg(fraction_fit=0.5, min_fit_clients=2)
    for h in real:  # the seeded draw over the trainers' worker names, in both
        assert h["selected_workers"] == sampler.configure(strategy, h["round"], {"w": np.zeros(1)}, NAMES).workers
    assert len({tuple(h["selected_workers"]) for h in real}) > 1  # the sample changes between rounds
    _assert_same_job(real, sim, real_weights, sim_weights)
    assert real[-1]["accuracy"] > 0.2  # it learned: a random LeNet-5 stays near 0.1 (0.2935 here)


def test_simulating_the_job_partition_is_the_real_fedprox_job(four_edges, tmp_path):
    """The strategy's round config (FedProx's ``mu``) reaches each simulated client as it reaches a trainer."""
    job = _manifests(tmp_path, aggregation_algorithm="fedprox", mu="0.5", exit_round="2")
    _assert_same_job(*_both(tmp_path, four_edges, job))


def test_job_partition_refuses_a_client_count_or_data_of_its_own(four_edges, tmp_path):
    job = _manifests(tmp_path)
    common = ["simulate", "-f", str(job), "--path-map", f"/data={four_edges}", "--partition", "job"]
    result = fedmist(*common, "--clients", "10")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        "error: --partition job makes one client per trainer (4 in this job); drop --clients 10"), result.stderr
    result = fedmist(*common, "--data", str(four_edges / "edge1"))
    assert result.returncode == 2 and "--partition job trains each trainer on its own dataset" in result.stderr
    result = fedmist("simulate", "-f", str(job), "--path-map", f"/data={four_edges}")
    assert result.returncode == 2 and "--partition iid needs --clients N" in result.stderr
    assert "Traceback" not in result.stderr
