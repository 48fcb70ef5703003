"""``Controller`` against races, churn, invalid and deleted jobs, unschedulable pods and pre-1.29 servers:
the defects a real API server showed (issue 22)."""

from __future__ import annotations

import threading
import time
from typing import Any

from kube_helpers import MNIST, api_with

from fedmist.launch.kube import names
from fedmist.launch.kube.api import MemoryApi
from fedmist.launch.kube.controller import Controller

NS, JOB = "default", "mnist-mistnet"
PODS = ["mnist-mistnet-cloud", "mnist-mistnet-edge1", "mnist-mistnet-edge2"]
FINAL = {"phase": "Succeeded", "stage": "done", "epoch": 10, "epochs": 10,
         "metrics": {"accuracy": 0.866, "loss": 0.37}, "workers": {}}


def status(api: MemoryApi) -> dict[str, Any]:
    return api.get(names.JOB_KIND, NS, JOB)["status"]


def run_all(api: MemoryApi) -> None:
    for pod in api.list("Pod", NS):
        api.set_pod_phase(NS, pod["metadata"]["name"], "Running")


def writes(api: MemoryApi, kind: str) -> int:
    return sum(1 for event, obj in api.events if event == "MODIFIED" and obj["kind"] == kind)


class SlowApi(MemoryApi):
    """Lists take a while and creates are counted: concurrent syncs would interleave here."""

    def __init__(self, source: MemoryApi) -> None:
        super().__init__(objects=source.objects)
        self.creates: list[str] = []

    def list(self, kind: str, namespace: str, labels: Any = None) -> list[dict[str, Any]]:
        found = super().list(kind, namespace, labels)
        time.sleep(0.02)
        return found

    def create(self, obj: Any) -> dict[str, Any]:
        self.creates.append(obj["metadata"]["name"])
        return super().create(obj)


def test_concurrent_syncs_of_one_job_create_each_object_once() -> None:
    api = SlowApi(api_with(MNIST, NS))
    controller = Controller(api, token_factory=lambda: "tok")
    threads = [threading.Thread(target=controller.sync, args=(NS, JOB)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(api.creates) == sorted(["mnist-mistnet-fedmist-token", "mnist-mistnet-aggregation", *PODS])


def test_status_write_is_conditional_and_a_lost_race_plans_again() -> None:
    api = api_with(MNIST, NS)
    controller = Controller(api, token_factory=lambda: "tok")
    controller.sync(NS, JOB)
    run_all(api)
    original = api.patch_status
    calls: list[str | None] = []

    def racing(kind: str, namespace: str, name: str, new: Any, resource_version: str | None = None) -> None:
        calls.append(resource_version)
        if len(calls) == 1:  # another writer records a retry between our read and our write
            other = dict(api.get(kind, namespace, name)["status"])
            other["retries"] = {**other["retries"], "edge1": {"restarts": 1, "notBefore": 9e9}}
            original(kind, namespace, name, other)
        original(kind, namespace, name, new, resource_version=resource_version)

    api.patch_status = racing  # type: ignore[method-assign]
    controller.sync(NS, JOB)
    assert len(calls) == 2 and all(calls)  # conditional, refused once (409), planned again over the new version
    assert status(api)["retries"]["edge1"]["restarts"] == 1  # the other writer's counter survives


def test_a_finished_job_and_its_model_are_not_rewritten() -> None:
    api = api_with(MNIST, NS)
    clock = [1000.0]
    controller = Controller(api, reports=lambda *_: FINAL, clock=lambda: clock[0], token_factory=lambda: "tok")
    controller.sync(NS, JOB)
    run_all(api)
    controller.sync(NS, JOB)
    for pod in PODS:
        api.set_pod_phase(NS, pod, "Succeeded", exit_code=0)
    controller.sync(NS, JOB)
    assert status(api)["phase"] == "Succeeded"
    model = api.get("Model", NS, "lenet5-mistnet")["status"]
    assert model["metrics"]["accuracy"] == 0.866 and model["updateTime"]
    before = (writes(api, names.JOB_KIND), writes(api, "Model"))
    for _ in range(3):
        clock[0] += 30
        time.sleep(1.05)  # a second later: a fresh timestamp anywhere would show
        controller.sync(NS, JOB)
    assert (writes(api, names.JOB_KIND), writes(api, "Model")) == before
    assert api.get("Model", NS, "lenet5-mistnet")["status"] == model


def test_an_invalid_job_fails_once_and_recovers_when_its_model_appears() -> None:
    api = api_with(MNIST, NS)
    model = api.get("Model", NS, "lenet5-mistnet")
    api.delete("Model", NS, "lenet5-mistnet")
    controller = Controller(api, token_factory=lambda: "tok")
    controller.sync(NS, JOB)
    failed = status(api)
    assert failed["phase"] == "Failed" and failed["conditions"][0]["reason"] == "InvalidSpec"
    before = writes(api, names.JOB_KIND)
    time.sleep(1.05)
    controller.sync(NS, JOB)
    assert writes(api, names.JOB_KIND) == before and status(api) == failed  # no fresh lastTransitionTime
    del model["metadata"]["uid"], model["metadata"]["resourceVersion"]
    api.create(model)
    controller.sync(NS, JOB)
    recovered = status(api)
    assert recovered["phase"] == "Pending" and "Failed" not in [c["type"] for c in recovered["conditions"]]
    assert sorted(p["metadata"]["name"] for p in api.list("Pod", NS)) == PODS


def test_a_job_being_deleted_is_left_alone() -> None:
    api = api_with(MNIST, NS)
    controller = Controller(api, token_factory=lambda: "tok")
    controller.sync(NS, JOB)
    api.objects[(names.JOB_KIND, NS, JOB)]["metadata"]["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    api.delete("Secret", NS, "mnist-mistnet-fedmist-token")
    api.delete("Service", NS, "mnist-mistnet-aggregation")
    assert controller.sync(NS, JOB) is None
    assert api.get("Secret", NS, "mnist-mistnet-fedmist-token") is None
    assert api.get("Service", NS, "mnist-mistnet-aggregation") is None


def test_a_job_deleted_during_a_sync_ends_it_quietly() -> None:
    api = api_with(MNIST, NS)
    controller = Controller(api, token_factory=lambda: "tok")
    original = api.create

    def create_then_lose_the_job(obj: Any) -> dict[str, Any]:
        created = original(obj)
        if api.get(names.JOB_KIND, NS, JOB) is not None and obj["kind"] == "Pod":
            api.delete(names.JOB_KIND, NS, JOB)
        return created

    api.create = create_then_lose_the_job  # type: ignore[method-assign]
    assert controller.sync(NS, JOB) is not None  # no NotFound raised for the status write


def test_unschedulable_pods_keep_the_job_pending_and_are_named() -> None:
    api = api_with(MNIST, NS)
    controller = Controller(api, token_factory=lambda: "tok")
    controller.sync(NS, JOB)
    api.set_pod_phase(NS, "mnist-mistnet-cloud", "Running")
    api.set_pod_phase(NS, "mnist-mistnet-edge1", "Running")
    edge2 = api.objects[("Pod", NS, "mnist-mistnet-edge2")]
    edge2["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient memory."}]}
    controller.sync(NS, JOB)
    job = status(api)
    assert job["phase"] == "Pending"
    waiting = next(c for c in job["conditions"] if c["type"] == "PodsPending")
    assert waiting["reason"] == "Unschedulable"
    assert waiting["message"] == "mnist-mistnet-edge2: Unschedulable: 0/3 nodes are available: 3 Insufficient memory."
    api.set_pod_phase(NS, "mnist-mistnet-edge2", "Running")
    controller.sync(NS, JOB)
    assert status(api)["phase"] == "Running"
    assert "PodsPending" not in [c["type"] for c in status(api)["conditions"]]


def test_a_server_without_native_sidecars_gets_a_plain_status_container() -> None:
    api = api_with(MNIST, NS)
    api.version = (1, 24)
    controller = Controller(api, token_factory=lambda: "tok")
    controller.sync(NS, JOB)
    cloud = api.get("Pod", NS, "mnist-mistnet-cloud")
    assert "initContainers" not in cloud["spec"]  # 1.24 would keep an init container from ever ending
    status_server = cloud["spec"]["containers"][1]
    assert status_server["name"] == "fedmist-status" and "restartPolicy" not in status_server
    assert status_server["args"][-1] == "--exit-after-final"
    run_all(api)
    controller.sync(NS, JOB)
    # the aggregator fails while its status container still runs: the pod is deleted, the retry created
    api.set_pod_phase(NS, "mnist-mistnet-cloud", "Running", exit_code=1)
    plan = controller.sync(NS, JOB)
    assert plan.delete == PODS  # the aggregator kept alive by its status container, and the trainers it served
    assert api.get("Pod", NS, "mnist-mistnet-cloud") is None

    modern = api_with(MNIST, NS)
    Controller(modern, token_factory=lambda: "tok").sync(NS, JOB)
    sidecar = modern.get("Pod", NS, "mnist-mistnet-cloud")["spec"]["initContainers"][-1]
    assert sidecar["name"] == "fedmist-status" and sidecar["restartPolicy"] == "Always"


def test_a_retried_aggregator_gets_its_trainers_back() -> None:
    """Seen on a real cluster: a failing aggregator ends its trainers ("job failed", exit 0); the retried one
    waited for nobody until the backoff limit failed the job."""
    api = api_with(MNIST, NS)
    clock = [1000.0]
    controller = Controller(api, clock=lambda: clock[0], token_factory=lambda: "tok")
    controller.sync(NS, JOB)
    run_all(api)
    controller.sync(NS, JOB)
    api.set_pod_phase(NS, "mnist-mistnet-cloud", "Failed", exit_code=1)
    for trainer in PODS[1:]:
        api.set_pod_phase(NS, trainer, "Succeeded", exit_code=0)
    assert controller.sync(NS, JOB).create == []  # backoff first
    clock[0] += 10
    created = [o["metadata"]["name"] for o in controller.sync(NS, JOB).create]
    assert created == ["mnist-mistnet-cloud-1", "mnist-mistnet-edge1-1", "mnist-mistnet-edge2-1"]
    retries = status(api)["retries"]
    assert retries["edge1"]["restarts"] == 0 and retries["edge1"]["reruns"] == 1  # not the trainer's failure
    for pod in created:
        api.set_pod_phase(NS, pod, "Succeeded", exit_code=0)
    controller.sync(NS, JOB)
    assert status(api)["phase"] == "Succeeded" and controller.sync(NS, JOB).create == []


def test_a_finished_aggregators_address_is_not_asked_again() -> None:
    """Seen on a real cluster: a finished pod's IP served another job's aggregator, whose report then
    replaced this job's status. Reports are read only from a running aggregator pod of an undecided job, and
    only the job's own aggregator's."""
    api = api_with(MNIST, NS)
    asked: list[str] = []
    answer = [{**FINAL, "worker": "cloud"}]

    def reports(namespace: str, job: str, pod: Any) -> dict[str, Any]:
        asked.append(pod["metadata"]["name"])
        return answer[0]

    controller = Controller(api, reports=reports, token_factory=lambda: "tok")
    controller.sync(NS, JOB)
    run_all(api)
    answer[0] = {**FINAL, "phase": "Running", "worker": "someone-else", "epoch": 7}
    controller.sync(NS, JOB)
    assert asked == ["mnist-mistnet-cloud"] and "lastReport" not in status(api)  # another worker's: ignored
    answer[0] = {**FINAL, "worker": "cloud"}
    api.set_pod_phase(NS, "mnist-mistnet-cloud", "Running", exit_code=0)  # its sidecar still serves
    for pod in PODS[1:]:
        api.set_pod_phase(NS, pod, "Succeeded", exit_code=0)
    controller.sync(NS, JOB)
    assert status(api)["phase"] == "Succeeded" and status(api)["metrics"]["accuracy"] == 0.866
    answer[0] = {"worker": "cloud", "phase": "Succeeded", "metrics": {"accuracy": 0.48}}  # the IP, reused
    before = len(asked)
    controller.sync(NS, JOB)
    assert len(asked) == before and status(api)["metrics"]["accuracy"] == 0.866
