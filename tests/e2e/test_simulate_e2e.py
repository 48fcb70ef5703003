"""``fedmist simulate`` end to end: the FedAvg example job's manifests, its two edges' real Fashion-MNIST data
repartitioned over 20 virtual clients (Dirichlet non-IID), 10 sampled per round, on a pool of 2 processes --
through the real CLI. The result is a job's: status.json with the round engine's history, report.png, the
model at the output Model url."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from e2e_helpers import REPO, fedmist

sys.path.insert(0, str(REPO / "src"))
from fedmist.strategy import FedAvg  # noqa: E402
from fedmist.strategy.sampling import ClientSampler  # noqa: E402

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "mnist-fedavg" / "job.yaml"


def _job(tmp_path: Path) -> Path:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    for doc in docs:
        if doc["kind"] == "Dataset":
            doc["spec"].update(url=f"/data/{doc['spec']['nodeName']}", format="idx")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _simulate(tmp_path: Path, data: Path, *extra: str):
    return fedmist("simulate", "-f", str(_job(tmp_path)), "--path-map", f"/data={data}",
                   "--path-map", f"/model={tmp_path / 'model'}", "--workdir", str(tmp_path / "run"), *extra,
                   timeout=240)


def test_simulate_twenty_clients_ten_per_round_on_two_workers(fedavg_data, tmp_path):
    data = fedavg_data
    result = _simulate(tmp_path, data, "--clients", "20", "--partition", "dirichlet", "--alpha", "1.0",
                       "--workers", "2", "--set", "fraction_fit=0.5", "--set", "exit_round=3",
                       "--set", "learning_rate=0.05", "--set", "epochs=2", "--set", "seed=3", "--set", f"TEST_DATASET_URL={data}/test")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "20 clients, partition dirichlet, 5000 samples (250..250 per client)" in result.stderr
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["phase"] == "Succeeded" and status["simulation"]["engine"] == "local"
    history = status["metrics"]["history"]
    assert [h["round"] for h in history] == [1, 2, 3]
    names = [f"client{i:02d}" for i in range(20)]
    sampler, strategy = ClientSampler(seed=3), FedAvg(fraction_fit=0.5, min_clients=2)
    for h in history:  # the same sampler and strategy as a real job's aggregator
        assert h["selected_workers"] == sampler.configure(strategy, h["round"], {"w": np.zeros(1)}, names).workers
        assert h["participants"] == h["selected"] == 10 and h["bytes_up"] > 10 * 61_706 * 4
    # 3 rounds x 10 clients x 250 images x 2 epochs from a random LeNet-5: a model that never aggregates stays at 0.1
    assert history[-1]["accuracy"] > 0.3 and history[-1]["accuracy"] == status["metrics"]["accuracy"]
    workers = status["workers"]
    assert sorted(workers) == ["pool-0", "pool-1"] and all(w["pid"] and w["exit_code"] == 0 for w in workers.values())
    assert sum(w["clients_trained"] for w in workers.values()) == 30
    assert sum(w["samples"] for w in workers.values()) == 30 * 250
    assert (tmp_path / "run" / "report.png").stat().st_size > 1000
    assert (tmp_path / "model" / "lenet5-fedavg.pth").exists()
    assert json.loads((tmp_path / "model" / "lenet5-fedavg.pth.json").read_text())["simulation"]["clients"] == 20


def test_simulate_bad_settings_are_one_line_errors(fedavg_data, tmp_path):
    data = fedavg_data
    result = _simulate(tmp_path, data, "--clients", "10", "--partition", "dirichlet", "--alpha", "0")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == \
        "error: alpha must be > 0 (Dirichlet concentration), got 0.0", result.stderr
    result = _simulate(tmp_path, data, "--clients", "10", "--set", "fraction_fit=2")
    assert result.returncode == 2 and "fraction_fit: must be a number in (0, 1] (got '2')" in result.stderr
    assert "Traceback" not in result.stderr
    result = _simulate(tmp_path, data, "--clients", "10", "--set", f"TEST_DATASET_URL={tmp_path / 'nope'}")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == \
        f"error: TEST_DATASET_URL: {tmp_path / 'nope'}: expected exactly one images file with this prefix, found none"
    assert "pool:" not in result.stderr  # refused before any worker process started
