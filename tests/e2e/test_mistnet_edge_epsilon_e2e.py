"""Edges with their own epsilons, end to end (issue 17): the real CLI warns which value each edge uses, and the cloud
learns each edge's epsilon from its stream, debiases per edge and reports per-edge figures next to the floor.

The run needs the trainer side of the rule (each edge applies the stricter of its own epsilon and the job's), which
lives in worker/mistnet/trainer.py (the "edge" branch); without it every edge sends the floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from e2e_helpers import REPO, fedmist, run_job

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "mnist-mistnet" / "job.yaml"


def _job_yaml(tmp_path: Path, floor: str, edges: tuple[str, str], epochs: int = 2, **aggregator: str) -> Path:
    """The MistNet example with the aggregator's epsilon ``floor`` (and env ``aggregator``), edge1/edge2 their own."""
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    containers = [job["spec"]["aggregationWorker"]["template"]["spec"]["containers"][0]] + [
        w["template"]["spec"]["containers"][0] for w in job["spec"]["trainingWorkers"]]
    for container, epsilon in zip(containers, (floor, *edges)):
        env = {e["name"]: e["value"] for e in container["env"]}
        env["epsilon"] = epsilon
        if container is containers[0]:
            env.update(epochs=str(epochs), **aggregator)
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_validate_warns_in_one_line_which_epsilon_each_edge_uses(tmp_path):
    result = fedmist("validate", "-f", str(_job_yaml(tmp_path, "100", ("2", "100"))))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: epsilon differs: aggregator 100 (the job's floor); edge1 uses 2 (its own), edge2 uses 100 (the floor)"]
    assert result.stdout.startswith("job mnist-mistnet: mistnet")


def test_mixed_epsilons_are_learned_per_edge_and_reported_with_the_floor(small_fmnist, tmp_path):
    result, status = run_job(_job_yaml(tmp_path, "4", ("1", "4")), small_fmnist, tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert status["phase"] == "Succeeded"
    workers = status["workers"]
    assert (workers["edge1"]["epsilon"], workers["edge2"]["epsilon"]) == ("1.0", "4.0")
    assert workers["edge1"]["privacy"]["epsilon_per_sample"] == pytest.approx(1176.0)
    assert workers["edge2"]["privacy"]["epsilon_per_sample"] == pytest.approx(4704.0)
    privacy = status["metrics"]["privacy"]
    assert privacy["epsilon_floor"] == 4.0 and privacy["epsilon_per_sample"] == pytest.approx(4704.0)
    assert privacy["num_classes"] == 10 and sorted(privacy["edges"]) == ["edge1", "edge2"]
    # edge1's bits flip 27% of the time, edge2's 2%: debiased per edge, the cloud still learns (chance is 0.1)
    assert status["metrics"]["accuracy"] > 0.6, status["metrics"]
    meta = json.loads(Path(f"{tmp_path / 'model' / 'lenet5-mistnet.pth'}.json").read_text())
    assert meta["epsilon"] == 4.0 and meta["edge_epsilons"] == {"edge1": {"epsilon": "1.0", "label_epsilon": ""},
                                                                "edge2": {"epsilon": "4.0", "label_epsilon": ""}}
    assert meta["privacy"]["edges"]["edge1"]["epsilon_per_feature"] == 1.0
    log = (tmp_path / "run" / "logs" / "cloud.log").read_text()
    assert "epsilon per edge (job floor 4.0): edge1 1.0, edge2 4.0" in log
