"""FedAvg end to end: the 2-worker example's manifests on small real Fashion-MNIST splits, run by the real CLI
as separate processes -- a clean job, one where a trainer is SIGKILLed mid-job and the quorum carries on, and one
where a trainer sends NaN weights every round and the rounds complete without it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from e2e_helpers import REPO

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "mnist-fedavg" / "job.yaml"
LENET5_FLOAT32_BYTES = 61_706 * 4


def _job_yaml(tmp_path: Path, **agg_env: str) -> Path:
    """The example job on IDX splits (instead of PNG indexes), with the aggregator env changed as given."""
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    for doc in docs:
        if doc["kind"] == "Dataset":
            doc["spec"].update(url=f"/data/{doc['spec']['nodeName']}", format="idx")
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    container = job["spec"]["aggregationWorker"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update(TEST_DATASET_URL="/data/test", **agg_env)
    container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    for worker in job["spec"]["trainingWorkers"]:
        trainer = worker["template"]["spec"]["containers"][0]
        trainer["env"] = [e if e["name"] != "learning_rate" else {"name": "learning_rate", "value": "0.05"}
                          for e in trainer["env"]]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _command(job: Path, data: Path, tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "fedmist", "run", "-f", str(job), "--path-map", f"/data={data}",
            "--path-map", f"/model={tmp_path / 'model'}", "--workdir", str(tmp_path / "run"), "--no-progress",
            "--timeout", "120"]


def _status(tmp_path: Path) -> dict:
    try:
        return json.loads((tmp_path / "run" / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def test_fedavg_job_succeeds_with_history_model_and_lean_wire(fedavg_data, tmp_path):
    """Also the path a container takes: --no-prefork starts every worker as a fresh interpreter."""
    job = _job_yaml(tmp_path, exit_round="3")
    result = subprocess.run(_command(job, fedavg_data, tmp_path) + ["--no-prefork"], capture_output=True, text=True,
                            timeout=150, cwd=REPO)
    started = [c for c in _status(tmp_path)["conditions"] if c["reason"] == "WorkersStarted"]
    assert started and "forked" not in started[0]["message"], started
    status = _status(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert status["phase"] == "Succeeded"
    metrics = status["metrics"]
    # 3 rounds over 5k images: about 0.7. A round that keeps the old model, or sums instead of averaging,
    # stays near 0.1; one that averages unweighted garbage lands far below 0.6.
    assert metrics["accuracy"] > 0.6, metrics
    assert metrics["model_bytes"] == LENET5_FLOAT32_BYTES
    history = metrics["history"]
    assert [h["round"] for h in history] == [1, 2, 3]
    assert all(h["participants"] == 2 and h["lost"] == 0 and h["late"] == 0 for h in history)
    assert history[-1]["accuracy"] == metrics["accuracy"] and history[0]["accuracy"] < history[-1]["accuracy"]
    for h in history:  # each way, per worker and round: <= 1.02 x the raw float32 parameter bytes
        assert LENET5_FLOAT32_BYTES < h["bytes_up"] / 2 <= 1.02 * LENET5_FLOAT32_BYTES, h
        assert LENET5_FLOAT32_BYTES < h["bytes_down"] / 2 <= 1.02 * LENET5_FLOAT32_BYTES, h
        assert h["duration_s"] > 0
    for name in ("edge1", "edge2"):
        worker = status["workers"][name]
        assert worker["phase"] == "Succeeded" and worker["samples"] == 2500 and worker["exit_code"] == 0
    model = tmp_path / "model" / "lenet5-fedavg.pth"
    meta = json.loads(Path(f"{model}.json").read_text())
    assert model.is_file() and meta["algorithm"] == "fedavg" and meta["rounds"] == 3
    assert meta["metrics"]["accuracy"] == metrics["accuracy"]


@pytest.mark.parametrize("max_restarts", [0, 1])
def test_sigkilled_trainer_is_counted_lost_and_the_quorum_finishes(fedavg_data, tmp_path, max_restarts):
    """Without restarts the quorum finishes the job; with one, the launcher restarts the worker and it rejoins."""
    rounds = 10 if max_restarts else 5  # leave the restarted process (1 s backoff + start-up) rounds to rejoin
    job = _job_yaml(tmp_path, exit_round=str(rounds), min_clients="1", round_timeout="15")
    command = _command(job, fedavg_data, tmp_path) + ["--max-restarts", str(max_restarts)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    killed = None
    try:
        deadline = time.monotonic() + 90
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            status = _status(tmp_path)
            edge2 = status.get("workers", {}).get("edge2", {})
            if status.get("progress", {}).get("round", 0) >= 2 and edge2.get("stage") == "training":
                pid = edge2["pid"]
                os.kill(pid, signal.SIGKILL)
                killed = pid
            time.sleep(0.05)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed, "the job never reached round 2"
    status = _status(tmp_path)
    assert proc.returncode == 0, stderr[-2000:]
    assert status["phase"] == "Succeeded"
    history = status["metrics"]["history"]
    assert len(history) == rounds
    assert sum(h["lost"] for h in history) == 1
    assert [w for h in history for w in h["lost_workers"]] == ["edge2"]
    assert status["metrics"]["lost_workers"] == ["edge2"]
    assert history[0]["participants"] == 2
    assert status["workers"]["edge2"]["restarts"] == max_restarts
    # restarted, edge2 rejoins a later round with the current global model; otherwise the quorum goes on alone
    assert history[-1]["participants"] == (2 if max_restarts else 1)
    assert status["workers"]["edge2"]["phase"] == ("Succeeded" if max_restarts else "Failed")
    assert status["metrics"]["accuracy"] > 0.6
    assert (tmp_path / "model" / "lenet5-fedavg.pth").is_file()


POISON_TRAINER = '''
import math

import torch

from fedmist.training import LocalResult, SGDTrainer


class NaNTrainer(SGDTrainer):
    """Trains as usual, then poisons one weight: the update arrives with a NaN in its last tensor."""

    def train(self, model, inputs, labels, config, cancel):
        result = SGDTrainer.train(self, model, inputs, labels, config, cancel)
        with torch.no_grad():
            list(model.parameters())[-1][-1] = math.nan
        return result
'''


def test_a_nan_update_is_refused_with_a_logged_reason_and_the_rounds_complete(fedavg_data, tmp_path):
    job = _job_yaml(tmp_path, exit_round="2", min_clients="1", round_timeout="60")
    docs = list(yaml.safe_load_all(job.read_text()))
    fl = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    poisoned = fl["spec"]["trainingWorkers"][1]["template"]["spec"]
    poisoned["containers"][0]["env"].append({"name": "trainer", "value": "poison_trainer:NaNTrainer"})
    job.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    (tmp_path / "poison_trainer.py").write_text(POISON_TRAINER)  # beside the job file: on the workers' path
    result = subprocess.run(_command(job, fedavg_data, tmp_path), capture_output=True, text=True, timeout=150,
                            cwd=REPO)
    status = _status(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert status["phase"] == "Succeeded"
    history = status["metrics"]["history"]
    bad = poisoned["nodeName"]
    assert [(h["participants"], h["rejected"]) for h in history] == [(1, [bad]), (1, [bad])]
    assert status["metrics"]["accuracy"] > 0.3  # a NaN in the global model would leave it at chance (0.1)
    aggregator_log = (tmp_path / "run" / "logs" / "cloud.log").read_text()  # the aggregator's nodeName
    assert (f"rejected the round 1 update of {bad}: tensor '11.bias' holds non-finite values (rolled back"
            in aggregator_log), aggregator_log[-3000:]
