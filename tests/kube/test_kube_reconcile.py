"""The operator's reconcile loop against an in-memory API: creation, failures and retries with backoff,
the backoff limit, completion, deletion (cascade and recreation) and spec changes."""

from __future__ import annotations

from typing import Any

import pytest
from kube_helpers import MNIST, SEED, api_with

from fedmist.launch.kube import names
from fedmist.launch.kube.api import MemoryApi
from fedmist.launch.kube.controller import Controller
from fedmist.launch.kube.reconcile import Policy

NS = "default"
JOB = "mnist-mistnet"
PODS = ["mnist-mistnet-cloud", "mnist-mistnet-edge1", "mnist-mistnet-edge2"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make(report: dict[str, Any] | None = None, path=MNIST) -> tuple[MemoryApi, Controller, Clock]:
    api = api_with(path, NS)
    clock = Clock()
    controller = Controller(api, reports=lambda ns, job, pod: report, clock=clock, token_factory=lambda: "tok",
                            policy=Policy(backoff_base_s=10, backoff_max_s=40, backoff_limit=3))
    return api, controller, clock


def pod_names(api: MemoryApi) -> list[str]:
    return [p["metadata"]["name"] for p in api.list("Pod", NS)]


def status(api: MemoryApi) -> dict[str, Any]:
    return api.get(names.JOB_KIND, NS, JOB)["status"]


def run_all(api: MemoryApi) -> None:
    """What the kubelets do: every pod of the job runs."""
    for name in pod_names(api):
        api.set_pod_phase(NS, name, "Running")


def test_create_makes_secret_service_and_pods_once() -> None:
    api, controller, _ = make()
    plan = controller.sync(NS, JOB)
    assert [o["metadata"]["name"] for o in plan.create] == ["mnist-mistnet-fedmist-token", "mnist-mistnet-aggregation",
                                                            *PODS]
    assert api.get("Secret", NS, "mnist-mistnet-fedmist-token")["stringData"] == {"token": "tok"}
    job_uid = api.get(names.JOB_KIND, NS, JOB)["metadata"]["uid"]
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == job_uid for p in api.list("Pod", NS))
    # created is not running: Pending, and the condition says which pods wait for what
    assert status(api)["phase"] == "Pending" and status(api)["active"] == 0
    assert controller.sync(NS, JOB).create == []  # idempotent
    waiting = next(c for c in status(api)["conditions"] if c["type"] == "PodsPending")
    assert waiting["message"].startswith("mnist-mistnet-cloud: waiting for node cloud (no kubelet has taken it)")
    run_all(api)
    controller.sync(NS, JOB)
    assert status(api)["phase"] == "Running" and status(api)["active"] == 3
    assert "PodsPending" not in [c["type"] for c in status(api)["conditions"]]


def test_failed_worker_is_retried_with_exponential_backoff_then_job_fails() -> None:
    api, controller, clock = make()
    controller.sync(NS, JOB)
    run_all(api)
    controller.sync(NS, JOB)
    expected_delays = [10, 20, 40]
    for attempt, delay in enumerate(expected_delays):
        name = "mnist-mistnet-edge1" + (f"-{attempt}" if attempt else "")
        api.set_pod_phase(NS, name, "Failed", exit_code=1)
        plan = controller.sync(NS, JOB)
        assert plan.create == [] and plan.requeue_after == delay
        assert status(api)["retries"]["edge1"]["restarts"] == attempt + 1
        clock.now += delay - 1
        assert controller.sync(NS, JOB).create == []  # backoff not over yet
        clock.now += 1
        created = controller.sync(NS, JOB).create
        assert [p["metadata"]["name"] for p in created] == [f"mnist-mistnet-edge1-{attempt + 1}"]
    assert status(api)["phase"] == "Running"
    api.set_pod_phase(NS, "mnist-mistnet-edge1-3", "Failed", exit_code=1)
    api.set_pod_phase(NS, "mnist-mistnet-cloud", "Running")
    plan = controller.sync(NS, JOB)
    final = status(api)
    assert final["phase"] == "Failed" and final["completionTime"]
    failed = [c for c in final["conditions"] if c["type"] == "Failed"]
    assert failed[0]["reason"] == "BackoffLimitExceeded"
    assert failed[0]["message"] == ("worker edge1 (trainer) exited with code 1; 3 restarts reached the backoff "
                                    "limit 3")
    assert sorted(plan.delete) == ["mnist-mistnet-cloud", "mnist-mistnet-edge2"]  # the job's active pods go
    assert controller.sync(NS, JOB).create == []  # a failed job creates nothing more


def test_restart_policy_never_and_bad_configuration_fail_at_once(tmp_path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(MNIST.read_text().replace("          nodeName: edge2\n",
                                            "          nodeName: edge2\n          restartPolicy: Never\n"))
    api, controller, _ = make(path=job)
    controller.sync(NS, JOB)
    api.set_pod_phase(NS, "mnist-mistnet-edge2", "Failed", exit_code=1)
    controller.sync(NS, JOB)
    assert status(api)["phase"] == "Failed"
    assert status(api)["conditions"][-2]["message"].endswith("restartPolicy Never")

    api, controller, _ = make()
    controller.sync(NS, JOB)
    api.set_pod_phase(NS, "mnist-mistnet-cloud", "Failed", exit_code=2)
    controller.sync(NS, JOB)
    assert status(api)["phase"] == "Failed"
    assert "bad configuration; not retried" in status(api)["conditions"][-2]["message"]


REPORT_TRAINING = {"worker": "cloud", "role": "aggregator", "phase": "Running", "stage": "training", "epoch": 3,
                   "epochs": 10, "history": [{"epoch": 3, "loss": 0.4, "test_accuracy": 0.81}],
                   "workers": {"edge1": {"phase": "done", "samples": 25000, "bytes_up": 10},
                               "edge2": {"phase": "done", "samples": 24000, "bytes_up": 11}},
                   "privacy": {"epsilon": 2.0}}


def test_progress_updates_one_training_condition_in_place() -> None:
    report = dict(REPORT_TRAINING)
    api, controller, _ = make(report)
    controller.sync(NS, JOB)
    for name in PODS:
        api.set_pod_phase(NS, name, "Running")
    for epoch in range(1, 6):
        report.update(epoch=epoch)
        controller.sync(NS, JOB)
    current = status(api)
    training = [c for c in current["conditions"] if c["type"] == "Training"]
    assert len(training) == 1 and len(current["conditions"]) == 2
    assert training[0]["status"] == "True" and training[0]["message"] == "epoch 5/10, accuracy 0.8100"
    assert current["step"] == "epoch 5/10" and current["workersReady"] == "3/3" and current["active"] == 3
    assert current["progress"] == {"stage": "training", "epoch": 5, "epochs": 10}
    assert current["metrics"]["privacy"] == {"epsilon": 2.0}
    assert api.get("Dataset", NS, "fmnist-edge1")["status"] == {"numberOfSamples": 25000}
    assert api.get("Dataset", NS, "fmnist-edge2")["status"] == {"numberOfSamples": 24000}


def test_completion_when_the_aggregator_succeeds_records_model_metrics() -> None:
    report = {**REPORT_TRAINING, "phase": "Succeeded", "stage": "done", "epoch": 10,
              "metrics": {"accuracy": 0.866, "loss": 0.37, "model_bytes": 246824}}
    api, controller, _ = make(report)
    controller.sync(NS, JOB)
    run_all(api)
    controller.sync(NS, JOB)
    for name in PODS[1:]:
        api.set_pod_phase(NS, name, "Succeeded", exit_code=0)
    # the status sidecar may still run: the worker container's exit decides
    api.set_pod_phase(NS, "mnist-mistnet-cloud", "Running", exit_code=0)
    plan = controller.sync(NS, JOB)
    final = status(api)
    assert final["phase"] == "Succeeded" and final["succeeded"] == 3 and final["failed"] == 0
    assert final["score"] == "accuracy 0.8660"
    assert [c["type"] for c in final["conditions"]] == ["Running", "Succeeded", "Training"]
    assert final["conditions"][-1]["status"] == "False"
    assert plan.requeue_after is None
    model = api.get("Model", NS, "lenet5-mistnet")["status"]
    assert model["metrics"]["accuracy"] == 0.866 and model["metrics"]["history"] == REPORT_TRAINING["history"]


def test_deleted_pod_is_recreated_but_a_finished_worker_is_not() -> None:
    api, controller, _ = make()
    controller.sync(NS, JOB)
    api.set_pod_phase(NS, "mnist-mistnet-edge2", "Succeeded", exit_code=0)
    controller.sync(NS, JOB)
    api.delete("Pod", NS, "mnist-mistnet-edge1")
    api.delete("Pod", NS, "mnist-mistnet-edge2")
    created = controller.sync(NS, JOB).create
    assert [p["metadata"]["name"] for p in created] == ["mnist-mistnet-edge1"]


def test_deleting_the_job_cascades_to_everything_it_owns() -> None:
    api, controller, _ = make()
    controller.sync(NS, JOB)
    assert len(api.list("Pod", NS)) == 3
    api.delete(names.JOB_KIND, NS, JOB)
    assert api.list("Pod", NS) == [] and api.list("Service", NS) == [] and api.list("Secret", NS) == []
    assert controller.sync(NS, JOB) is None
    deleted = [obj["metadata"]["name"] for kind, obj in api.events if kind == "DELETED"]
    assert set(deleted) >= {JOB, *PODS, "mnist-mistnet-aggregation", "mnist-mistnet-fedmist-token"}


def test_spec_change_recreates_the_workers() -> None:
    api, controller, _ = make()
    controller.sync(NS, JOB)
    old_hash = status(api)["specHash"]
    job = api.objects[(names.JOB_KIND, NS, JOB)]
    job["spec"]["trainingWorkers"][0]["template"]["spec"]["containers"][0]["env"][2]["value"] = "4"
    plan = controller.sync(NS, JOB)
    assert sorted(plan.delete) == sorted(PODS)
    assert status(api)["specHash"] != old_hash
    assert status(api)["conditions"][0]["reason"] == "SpecChanged"
    # the deletions happened in the API; the next pass creates the new pods
    created = controller.sync(NS, JOB).create
    assert [p["metadata"]["name"] for p in created] == PODS
    assert {p["metadata"]["annotations"][names.ANNOTATION_SPEC_HASH] for p in created} == {status(api)["specHash"]}
    assert {e["value"] for e in created[1]["spec"]["containers"][0]["env"] if e["name"] == "epsilon"} == {"4"}


def test_terminating_pod_delays_recreation() -> None:
    api, controller, _ = make()
    controller.sync(NS, JOB)
    api.objects[("Pod", NS, "mnist-mistnet-edge1")]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    plan = controller.sync(NS, JOB)
    assert plan.create == [] and plan.requeue_after == 2.0


def test_invalid_job_fails_with_the_manifest_error_line() -> None:
    api, controller, _ = make(path=SEED)
    controller.sync(NS, "yolo-v5")
    failed = api.get(names.JOB_KIND, NS, "yolo-v5")["status"]
    assert failed["phase"] == "Failed" and failed["conditions"][0]["reason"] == "InvalidSpec"
    assert failed["conditions"][0]["message"] == (
        "namespace default: FederatedLearningJob/yolo-v5: spec.aggregationWorker.template.spec.nodeName: is an unset "
        "shell variable; write the node's name (or export it before `fedmist render`) (got '$CLOUD_NODE')")
    assert api.list("Pod", NS) == []


def test_backoff_limit_annotation_overrides_the_default() -> None:
    api, controller, _ = make()
    api.objects[(names.JOB_KIND, NS, JOB)]["metadata"]["annotations"] = {names.ANNOTATION_BACKOFF_LIMIT: "0"}
    controller.sync(NS, JOB)
    api.set_pod_phase(NS, "mnist-mistnet-edge1", "Failed", exit_code=1)
    controller.sync(NS, JOB)
    assert status(api)["phase"] == "Failed"


@pytest.mark.parametrize("restarts,delay", [(1, 10), (2, 20), (3, 40), (4, 40)])
def test_backoff_delay_doubles_up_to_the_cap(restarts: int, delay: float) -> None:
    assert Policy(backoff_base_s=10, backoff_max_s=40).delay(restarts) == delay


def test_watch_event_of_a_deleted_pod_drives_its_recreation() -> None:
    """What the operator's pod-event handler does: an event of a job's pod syncs that job."""
    api, controller, _ = make()
    controller.sync(NS, JOB)
    created: list[str] = []

    def on_event(kind: str, obj: dict) -> None:
        job = obj["metadata"].get("labels", {}).get(names.LABEL_JOB)
        if obj["kind"] == "Pod" and kind == "DELETED" and job:
            created.extend(p["metadata"]["name"] for p in controller.sync(NS, job).create)

    api.watchers.append(on_event)
    api.delete("Pod", NS, "mnist-mistnet-edge2")
    assert created == ["mnist-mistnet-edge2"] and "mnist-mistnet-edge2" in pod_names(api)
