"""Jobs end to end on the test cluster: YAML applied through the emulated API, the real ``fedmist operator``
process reconciling it, the process kubelet running its pods (issue 22, point 4).

Each test starts its own cluster (``kube_cluster.start_cluster``); datasets are small so the whole file stays
within a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import REPO, fedmist, split_fmnist
from kube_cluster import GROUP_PATH, Cluster, example_documents, start_cluster

from fedmist.launch.kube.jobstatus import KUBE_ONLY_KEYS

pytestmark = pytest.mark.e2e

FEDAVG = REPO / "examples" / "mnist-fedavg" / "job.yaml"
MISTNET = REPO / "examples" / "mnist-mistnet" / "job.yaml"
TERMINAL = ("Succeeded", "Failed")
OPERATOR = "system:serviceaccount:fedmist-system:fedmist-operator"


@pytest.fixture(scope="module")
def png_data(tmp_path_factory) -> Path:
    """The FedAvg example's own format: PNGs with Sedna txt indexes, 600 images per edge and 600 to test."""
    root = tmp_path_factory.mktemp("kube-png") / "data"
    export = fedmist("data", "export", "--out", str(root), "--limit", "1200", "--edges", "600,600", "--seed", "3")
    assert export.returncode == 0, export.stderr
    return root


def _phase(*wanted: str):
    return lambda job: (job.get("status") or {}).get("phase") in wanted


def _settled(job: dict[str, Any]) -> bool:
    """Finished, and every worker's end recorded (trainers exit just after the aggregator)."""
    status = job.get("status") or {}
    return status.get("phase") in TERMINAL and all(
        w.get("phase") in TERMINAL for w in (status.get("workers") or {}).values())


def _status_of(cluster: Cluster, plural: str, name: str, key: str, timeout_s: float = 15) -> dict[str, Any]:
    """A Dataset's or Model's status once it has ``key`` (the operator writes them just after the job's)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = (cluster.get(f"{GROUP_PATH}/namespaces/{cluster.namespace}/{plural}/{name}") or {}).get("status")
        if key in (status or {}) or time.monotonic() > deadline:
            return status or {}
        time.sleep(0.2)


def _created_pods(cluster: Cluster) -> list[str]:
    """Every pod the operator created (201s of POST .../pods), in order."""
    return [path for _, method, path, code in cluster.api.requests
            if method == "POST" and path.endswith("/pods") and code == 201]


def _refused(cluster: Cluster) -> list[tuple[str, str, str, int]]:
    """The operator's requests the API refused for its rights or credentials (401/403)."""
    return [r for r in cluster.api.requests if r[0] == OPERATOR and r[3] in (401, 403)] + \
        [r for r in cluster.api.requests if r[0] == "" and r[3] == 401]


def _pod_log(cluster: Cluster, pod: str, container: str) -> str:
    return "".join(p.read_text() for p in sorted(cluster.root.glob(f"node/pods/{cluster.namespace}_{pod}_*/"
                                                                    f"{container}.log")))


def test_fedavg_example_end_to_end_through_the_operator(png_data, tmp_path):
    """Applied through the API, the example succeeds; the operator restarted mid-job adopts it (no duplicate pod);
    the printer columns move; Model and Datasets get their status; the status is ``fedmist run``'s for the same
    job plus the Kubernetes keys; deleting the job removes all it owns."""
    # 6 local epochs: rounds of a few seconds even on a quiet machine, so the operator's 1 s polls see them go by
    docs = example_documents(FEDAVG, {"learning_rate": "0.05", "epochs": "6"}, exit_round="3")
    cluster = start_cluster(tmp_path / "cluster", {"/data": png_data, "/model": tmp_path / "model"})
    try:
        cluster.apply(docs)
        cluster.wait_job("mnist-fedavg", lambda j: (j.get("status") or {}).get("progress", {}).get("round", 0) >= 1,
                         120)
        cluster.stop_operator()  # mid-job: the pods run on; a new operator must adopt them, not add more
        time.sleep(1.5)
        cluster.start_operator()
        job = cluster.wait_job("mnist-fedavg", _settled, 150)
        model_status = _status_of(cluster, "models", "fmnist-fedavg-model", "metrics")
        datasets = {d: _status_of(cluster, "datasets", d, "numberOfSamples")
                    for d in ("edge1-fmnist-dataset", "edge2-fmnist-dataset")}
        created = _created_pods(cluster)
        # kubectl delete fl: kopf's finalizer is released by the operator, then everything the job owns goes
        cluster.request("DELETE", f"{GROUP_PATH}/namespaces/{cluster.namespace}/federatedlearningjobs/mnist-fedavg")
        deadline = time.monotonic() + 30
        while cluster.job("mnist-fedavg") or cluster.pods("mnist-fedavg") or cluster.get(
                f"/api/v1/namespaces/{cluster.namespace}/services/mnist-fedavg-aggregation"):
            assert time.monotonic() < deadline, (cluster.job("mnist-fedavg"), cluster.pods("mnist-fedavg"))
            time.sleep(0.2)
        assert cluster.get(f"/api/v1/namespaces/{cluster.namespace}/secrets/mnist-fedavg-fedmist-token") is None
    finally:
        cluster.close()
    status = job["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)[-3000:]
    assert _refused(cluster) == []  # deploy/rbac.yaml's ClusterRole grants all the operator did
    assert len(created) == 3, created  # one pod per worker, none duplicated by the restarted operator
    assert cluster.operator_starts == 2
    # the printer columns moved while it ran: Running, rounds counting up, all workers ready
    running = [s for s in cluster.history if s.get("phase") == "Running"]
    assert {"round 1/3", "round 2/3"} & {s.get("step") for s in running}, [s.get("step") for s in cluster.history]
    assert any(s.get("workersReady") == "3/3" for s in running)
    assert status["step"] == "round 3/3" and status["score"].startswith("accuracy ")
    metrics = status["metrics"]
    assert len(metrics["history"]) == 3 and metrics["accuracy"] > 0.3, metrics
    assert model_status["metrics"]["accuracy"] == metrics["accuracy"] and model_status["updateTime"]
    assert {d: s.get("numberOfSamples") for d, s in datasets.items()} == {"edge1-fmnist-dataset": 600,
                                                                          "edge2-fmnist-dataset": 600}
    assert (tmp_path / "model" / "lenet5-fedavg.pth").is_file()

    # the same job run locally: the cluster's status is the local status.json plus the Kubernetes keys
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    local = fedmist("run", "-f", str(job_file), "--path-map", f"/data={png_data}", "--path-map",
                    f"/model={tmp_path / 'local-model'}", "--workdir", str(tmp_path / "run"), "--no-progress",
                    timeout=180)
    assert local.returncode == 0, local.stderr[-2000:]
    expected = json.loads((tmp_path / "run" / "status.json").read_text())
    assert set(status) - {*KUBE_ONLY_KEYS, "lastReport"} == set(expected)
    # the slowest link of a round is a timing (which edge's update took longest), like a wall time
    untimed = lambda progress: {k: v for k, v in progress.items() if k != "slowest_link"}  # noqa: E731
    assert status["phase"] == expected["phase"]
    assert untimed(status["progress"]) == untimed(expected["progress"])
    assert set(status["progress"]) == set(expected["progress"])
    assert set(status["metrics"]) == set(expected["metrics"])
    for worker, seen in expected["workers"].items():
        assert status["workers"][worker]["phase"] == seen["phase"] == "Succeeded"
        assert status["workers"][worker]["samples"] == seen["samples"]
        assert set(status["workers"][worker]) == set(seen)


@pytest.fixture(scope="module")
def mistnet_data(tmp_path_factory, small_fmnist) -> dict[str, Path]:
    """edge1 of 20,000 images (its extraction and upload take seconds even on a quiet machine, so the pod is
    deleted mid-upload; with 8,000 it sometimes finished first), edge2 of 1,000, the test set;
    small_fmnist's pretrained LeNet-5."""
    root = split_fmnist(tmp_path_factory.mktemp("kube-mistnet") / "data", "20000,1000", seed=7)
    return {"data": root, "pretrained": small_fmnist["pretrained"]}


def _aggregator_report(cluster: Cluster, job: str) -> dict[str, Any]:
    """The aggregator's report, read from its status sidecar as the operator does (but as often as asked)."""
    pod = next((p for p in cluster.pods(job) if p["metadata"]["labels"].get(
        "federatedlearningjob.sedna.io/worker-type") == "aggregation"), None)
    ip = ((pod or {}).get("status") or {}).get("podIP")
    if not ip:
        return {}
    try:
        with urllib.request.urlopen(f"http://{ip}:7364/report", timeout=1) as reply:
            report = json.loads(reply.read())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def _aggregator_view(cluster: Cluster, job: str, edge: str) -> dict[str, Any]:
    return (_aggregator_report(cluster, job).get("workers") or {}).get(edge) or {}


def test_mistnet_demo_job_succeeds_though_a_trainer_pod_is_deleted_mid_upload(mistnet_data, tmp_path):
    docs = example_documents(MISTNET, epochs="1")
    cluster = start_cluster(tmp_path / "cluster", {"/data": mistnet_data["data"],
                                                   "/pretrained": mistnet_data["pretrained"],
                                                   "/model": tmp_path / "model"})
    try:
        cluster.apply(docs)
        deadline = time.monotonic() + 120
        while not 500 <= _aggregator_view(cluster, "mnist-mistnet", "edge1").get("received", 0) < 12000:
            assert time.monotonic() < deadline, cluster.operator_log()[-3000:]
            time.sleep(0.05)
        received = _aggregator_view(cluster, "mnist-mistnet", "edge1")["received"]
        cluster.delete_pod("mnist-mistnet-edge1")
        job = cluster.wait_job("mnist-mistnet", _phase(*TERMINAL), 150)
        model_status = _status_of(cluster, "models", "lenet5-mistnet", "metrics")
        samples = {d: _status_of(cluster, "datasets", d, "numberOfSamples").get("numberOfSamples")
                   for d in ("fmnist-edge1", "fmnist-edge2")}
        created = _created_pods(cluster)
        aggregator_log = _pod_log(cluster, "mnist-mistnet-cloud", "agg-worker")
    finally:
        cluster.close()
    status = job["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)[-3000:]
    assert len(created) == 4 and sum(p.endswith("/pods") for p in created) == 4  # edge1 recreated once
    resumed = [int(n) for n in re.findall(r"worker edge1 resumes its upload at record (\d+)", aggregator_log)]
    assert len(resumed) == 1 and 0 < resumed[0] < 20000 and resumed[0] >= received - 600, (resumed, received)
    assert status["workers"]["edge1"]["samples"] == 20000 and samples == {"fmnist-edge1": 20000, "fmnist-edge2": 1000}
    assert status["metrics"]["accuracy"] > 0.5 and model_status["metrics"]["accuracy"] == status["metrics"]["accuracy"]
    assert (tmp_path / "model" / "lenet5-mistnet.pth").is_file()


def test_fedavg_aggregator_pod_deleted_mid_training_resumes_from_its_checkpoint(png_data, tmp_path):
    docs = example_documents(FEDAVG, {"learning_rate": "0.05", "epochs": "2"}, exit_round="3")
    cluster = start_cluster(tmp_path / "cluster", {"/data": png_data, "/model": tmp_path / "model"})
    try:
        cluster.apply(docs)
        deadline = time.monotonic() + 120
        while len(_aggregator_report(cluster, "mnist-fedavg").get("history") or []) < 2:  # 2 rounds checkpointed
            assert time.monotonic() < deadline, cluster.operator_log()[-3000:]
            time.sleep(0.05)
        cluster.delete_pod("mnist-fedavg-cloud")
        job = cluster.wait_job("mnist-fedavg", _phase(*TERMINAL), 150)
        created = _created_pods(cluster)
        logs = _pod_log(cluster, "mnist-fedavg-cloud", "agg-worker")
    finally:
        cluster.close()
    status = job["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)[-3000:]
    assert len(created) == 4, created  # the aggregator once more, the trainers kept
    assert status["metrics"].get("resumed_from_round", 0) >= 2, (status["metrics"], logs[-3000:])
    assert [h["round"] for h in status["metrics"]["history"]] == [1, 2, 3]
