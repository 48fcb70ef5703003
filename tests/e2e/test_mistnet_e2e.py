"""MistNet end to end: the example job's manifests, run by the real CLI as separate processes on real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from e2e_helpers import REPO, fedmist, run_job

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "mnist-mistnet" / "job.yaml"


def _job_yaml(tmp_path: Path, epochs: int = 2, **env_changes: str | None) -> Path:
    """The example job with fewer cloud epochs (and any env changes; None removes a variable)."""
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    containers = [job["spec"]["aggregationWorker"]["template"]["spec"]["containers"][0]] + [
        w["template"]["spec"]["containers"][0] for w in job["spec"]["trainingWorkers"]]
    for index, container in enumerate(containers):
        env = {e["name"]: e["value"] for e in container["env"]}
        if index == 0:
            env["epochs"] = str(epochs)
        for name, value in env_changes.items():
            env.pop(name, None) if value is None else env.__setitem__(name, value)
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _run(job: Path, data: dict[str, Path], tmp_path: Path) -> tuple:
    return run_job(job, data, tmp_path, timeout=240)


def test_mistnet_job_succeeds_with_accuracy_model_and_privacy_figures(small_fmnist, tmp_path):
    result, status = _run(_job_yaml(tmp_path), small_fmnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert status["phase"] == "Succeeded"
    metrics = status["metrics"]
    # 6k noisy-bit samples, 2 cloud epochs at epsilon 2: a broken channel (constant or random bits) sits near 0.1
    assert metrics["accuracy"] > 0.72, metrics
    assert metrics["privacy"]["features_per_sample"] == 1176
    assert metrics["privacy"]["epsilon_per_sample"] == pytest.approx(2352.0)
    assert len(metrics["history"]) == 2
    for name in ("edge1", "edge2"):
        worker = status["workers"][name]
        assert worker["phase"] == "Succeeded" and worker["samples"] == 3000
        # 147 B of packed bits + 1 label byte per image, plus framing: well under 150 B per image
        assert 148 * 3000 <= worker["bytes_up"] <= 150 * 3000, worker
    model = tmp_path / "model" / "lenet5-mistnet.pth"
    assert model.is_file()
    meta = json.loads(Path(f"{model}.json").read_text())
    assert meta["cut_layer"] == 3 and meta["epsilon"] == 2.0 and meta["metrics"]["accuracy"] == metrics["accuracy"]
    assert (tmp_path / "run" / "logs" / "cloud.log").read_text().count("uploaded") >= 2
    started = [c for c in status["conditions"] if c["reason"] == "WorkersStarted"]
    assert "forked from a zygote with torch preloaded" in started[0]["message"], started


def test_mistnet_without_epsilon_is_a_one_line_manifest_error(tmp_path):
    job = _job_yaml(tmp_path, epsilon=None)
    result = fedmist("validate", "-f", str(job))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0] == (
        f"error: {job}: FederatedLearningJob/mnist-mistnet: spec.aggregationWorker.template.spec.containers[0].env"
        ".epsilon: required for aggregation_algorithm=mistnet; use epsilon: inf to disable noise explicitly")


def test_dead_worker_fails_the_job_naming_it_and_keeps_stored_features(small_fmnist, tmp_path):
    """edge2's dataset folder does not exist: its process exits 2 (misconfigured, never restarted) and the job
    fails naming it. An upload the aggregator stored in an earlier run of this work folder survives intact."""
    import hashlib

    import numpy as np

    from fedmist.worker.mistnet.feature_store import WorkerStore, read_manifest

    data = dict(small_fmnist)
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "edge1").symlink_to(small_fmnist["data"] / "edge1")
    (broken / "test").symlink_to(small_fmnist["data"] / "test")
    data["data"] = broken
    store_root = tmp_path / "run" / "state" / "cloud" / "features" / "0123456789abcdef"  # an earlier task
    rows = np.random.default_rng(0).integers(0, 256, size=(3000, 148), dtype=np.uint8)
    rows[:, -1] %= 10
    stored = WorkerStore.open(store_root, "edge1", num_samples=3000, feature_bytes=147, label_bytes=1,
                              feature_shape=[6, 14, 14])
    stored.write(0, rows.tobytes())
    stored.finish(hashlib.sha256(rows.tobytes()).hexdigest())

    result, status = _run(_job_yaml(tmp_path), data, tmp_path)
    assert result.returncode != 0
    assert status["phase"] == "Failed"
    message = status["conditions"][-1]["message"]
    assert message.startswith("worker edge2 (trainer) exited with code 2: dataset fmnist-edge2:"), message
    assert status["workers"]["edge2"]["phase"] == "Failed" and status["workers"]["edge2"]["restarts"] == 0
    assert "reason: worker edge2" in result.stderr
    manifest = read_manifest(store_root / "edge1")
    assert manifest is not None and manifest.complete
    assert (store_root / "edge1" / "records.u8").read_bytes() == rows.tobytes()


def test_a_work_folder_that_cannot_be_created_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = fedmist("run", "-f", str(REPO / "examples" / "mnist-mistnet" / "job.yaml"),
                     "--workdir", str(blocker / "run"), "--no-progress", timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: [Errno 20] Not a directory: '{blocker / 'run' / 'logs'}'"]
