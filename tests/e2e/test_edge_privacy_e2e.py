"""The edge enforces its own privacy (issue 17), with the real CLI and real processes: the stricter epsilon is
what goes on the wire, the privacy budget refuses a job before anything is uploaded, a killed trainer resumes
with its state folder and fails in one clear line without it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import fedmist, split_fmnist
from fault_helpers import AGGREGATOR, JobRun, write_job

from fedmist.launch.local import free_port
from fedmist.testing.fault_proxy import FaultProxy

pytestmark = pytest.mark.e2e

R = 1176  # LeNet-5 cut at layer 3: 6x14x14 bits
RECORD = 148  # 147 bytes of packed bits + 1 label byte


@pytest.fixture(scope="module")
def tiny_edges(tmp_path_factory) -> Path:
    """edge1/edge2 of 300 Fashion-MNIST images each and the 10k test set (IDX), made by the real CLI."""
    return split_fmnist(tmp_path_factory.mktemp("edgeprivacy") / "data", "300,300", seed=7)


def _job(tmp_path: Path, data: Path, pretrained: Path, agg_epsilon: str, trainer_env: dict[str, str]) -> Path:
    agg = {"aggregation_algorithm": "mistnet", "model": "lenet5", "cut_layer": "3", "epsilon": agg_epsilon,
           "batch_size": "64", "epochs": "1", "learning_rate": "0.05", "seed": "3",
           "TEST_DATASET_URL": str(data / "test")}
    trainer = {"aggregation_algorithm": "mistnet", "cut_layer": "3", **trainer_env}
    return write_job(tmp_path / "job.yaml", "edge-privacy", data, ["edge1", "edge2"], agg, trainer,
                     tmp_path / "model" / "model.pth", pretrained)


def _stored_records(workdir: Path, edge: str) -> list[Path]:
    return sorted((workdir / "state" / AGGREGATOR / "features").glob(f"*/{edge}/records.u8"))


def _ledger(workdir: Path, edge: str) -> list[dict]:
    path = workdir / "state" / edge / "privacy-ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _clean_bits(pretrained: Path, images: np.ndarray) -> np.ndarray:
    """The clean channel bits of ``images`` through the same pretrained edge part the aggregator sends."""
    from fedmist.models.extract import channel_features
    from fedmist.models.parts import build_job_model, split_parts
    from fedmist.models.weights import load_weights
    from fedmist.privacy.channel import unpack_bits

    model = build_job_model("lenet5", num_classes=10)
    model.load_state_dict(load_weights(pretrained))
    edge = split_parts(model, 3, "lenet5").edge
    return unpack_bits(channel_features(edge, images), R)


def test_the_edges_epsilon_wins_over_an_aggregator_that_says_inf(tiny_edges, small_fmnist, tmp_path):
    from fedmist.data.loaders import load_dataset
    from fedmist.privacy.channel import unpack_bits

    pretrained = small_fmnist["pretrained"] / "lenet5.pth"
    run = JobRun(_job(tmp_path, tiny_edges, pretrained, "inf", {"epsilon": "2"}), tmp_path / "run")
    assert run.finish() == 0, run.stderr[-2000:]
    for edge in ("edge1", "edge2"):
        images, labels = load_dataset(str(tiny_edges / edge), "idx")
        [store] = _stored_records(tmp_path / "run", edge)
        records = np.fromfile(store, dtype=np.uint8).reshape(len(images), RECORD)
        uploaded = unpack_bits(np.ascontiguousarray(records[:, :147]), R)
        flipped = float((uploaded != _clean_bits(pretrained, images)).mean())
        assert abs(flipped - 1 / (1 + math.e ** 2)) < 0.01, (edge, flipped)  # 11.9 %, not 0 % at the job's inf
        assert np.array_equal(records[:, 147], labels)  # labels in clear: no label_epsilon anywhere
        assert run.report(edge)["epsilon"] == 2.0
        [entry] = _ledger(tmp_path / "run", edge)
        assert (entry["epsilon"], entry["r"], entry["label_epsilon"], entry["job"]) == (2.0, R, None, "edge-privacy")
        shown = fedmist("privacy", "ledger", str(tmp_path / "run" / "state" / edge))
        assert shown.returncode == 0, shown.stderr
        assert "  epsilon per feature: 2\n" in shown.stdout and f"  epsilon per sample:  {2 * R}\n" in shown.stdout
        print(f"\n[edge privacy] {edge}: {flipped:.4f} of the uploaded bits differ from the clean ones "
              f"(1/(1+e^2) = {1 / (1 + math.e ** 2):.4f}) under an aggregator epsilon of inf")


def test_a_job_over_the_privacy_budget_is_refused_before_anything_is_uploaded(tiny_edges, small_fmnist, tmp_path):
    pretrained = small_fmnist["pretrained"] / "lenet5.pth"
    job = _job(tmp_path, tiny_edges, pretrained, "2", {"epsilon": "2", "privacy_budget": "1000"})
    run = JobRun(job, tmp_path / "run")
    assert run.finish() == 2, run.stderr[-2000:]
    status = run.status()
    condition = status["conditions"][-1]
    assert status["phase"] == "Failed" and condition["reason"] == "WorkerFailed", condition
    assert condition["message"].endswith(
        "exited with code 2: privacy budget exceeded: this job would release 1176 features per sample at "
        "epsilon 2 (2352 per sample); with the 0 earlier releases in this edge's ledger (cumulative 0 per "
        "sample) that makes 2352, over privacy_budget 1000; nothing was uploaded"), condition
    for edge in ("edge1", "edge2"):
        assert _stored_records(tmp_path / "run", edge) == []  # not one record reached the aggregator
        assert _ledger(tmp_path / "run", edge) == []
        assert run.report(AGGREGATOR).get("workers", {}).get(edge, {}).get("received", 0) == 0


def _throttled() -> tuple[FaultProxy, dict[str, str]]:
    agg_port = free_port()
    # slow enough (about 400 records/s) that the kill lands mid-upload even when status.json lags on a loaded machine
    proxy = FaultProxy(agg_port, rate_bytes_per_s=60_000, socket_buffer=16 * 1024).start()
    return proxy, {"FEDMIST_AGG_PORT": str(agg_port), "FEDMIST_TRAINER_AGG_PORT": str(proxy.port)}


def _kill_edge1_mid_upload(small_fmnist, tmp_path: Path, lose_state: bool) -> JobRun:
    job = _job(tmp_path, small_fmnist["data"], small_fmnist["pretrained"] / "lenet5.pth", "2", {"epsilon": "2"})
    proxy, env = _throttled()
    try:
        run = JobRun(job, tmp_path / "run", env=env)
        run.wait_until(lambda: 300 <= run.report(AGGREGATOR).get("workers", {}).get("edge1", {}).get("received", 0)
                       < 2000, "edge1 part-way through its upload")
        run.kill("edge1")
        if lose_state:  # before the launcher's restart (1 s backoff): the pod came back with an empty folder
            shutil.rmtree(tmp_path / "run" / "state" / "edge1")
        run.finish()
    finally:
        proxy.stop()
    return run


def test_a_trainer_killed_mid_upload_resumes_with_its_state_folder(small_fmnist, tmp_path):
    run = _kill_edge1_mid_upload(small_fmnist, tmp_path, lose_state=False)
    assert run.proc.returncode == 0, run.stderr[-2000:]
    status = run.status()
    assert status["phase"] == "Succeeded" and status["workers"]["edge1"]["restarts"] == 1
    assert "worker edge1 resumes its upload at record" in run.log(AGGREGATOR)  # and its hash then matched
    assert len(_ledger(tmp_path / "run", "edge1")) == 1  # the resumed upload is the same release


def test_a_trainer_restarted_with_a_lost_state_folder_fails_in_one_line(small_fmnist, tmp_path):
    run = _kill_edge1_mid_upload(small_fmnist, tmp_path, lose_state=True)
    assert run.proc.returncode == 2, run.stderr[-2000:]
    status = run.status()
    condition = status["conditions"][-1]
    assert status["phase"] == "Failed" and status["workers"]["edge1"]["restarts"] == 1, status["workers"]["edge1"]
    assert "worker edge1 (trainer) exited with code 2: the aggregator holds " in condition["message"]
    assert ("records of an earlier upload by this edge that it cannot reproduce: its state folder (noise seed "
            "and ledger) was lost") in condition["message"]
