"""The operator's status equals the local launcher's ``status.json`` (``launch/status.py``) for the same
worker outcomes and the same aggregator report; only Kubernetes-specific keys are added."""

from __future__ import annotations

from typing import Any

import pytest
from kube_helpers import MNIST, api_with

from fedmist.launch.kube import names
from fedmist.launch.kube.controller import Controller
from fedmist.launch.kube.jobstatus import KUBE_ONLY_KEYS, score_text, step_text
from fedmist.launch.status import FAILED, RUNNING, SUCCEEDED, JobStatus, ProcessState

NS = "default"
WORKERS = [("cloud", "aggregator", 2 * 2**30), ("edge1", "trainer", 2**30), ("edge2", "trainer", 2**30)]
REPORT = {"worker": "cloud", "role": "aggregator", "phase": "Running", "stage": "training", "epoch": 4, "epochs": 10,
          "peak_rss_mb": 612.5, "privacy": {"epsilon": 2.0, "features_per_sample": 1176},
          "history": [{"epoch": 4, "loss": 0.41, "test_accuracy": 0.83}],
          "workers": {"edge1": {"phase": "done", "samples": 25000, "bytes_up": 3675000, "compute_s": 4.5},
                      "edge2": {"phase": "done", "samples": 25000, "bytes_up": 3675000, "compute_s": 4.7}}}
FINAL = {**REPORT, "phase": "Succeeded", "stage": "done", "epoch": 10,
         "metrics": {"accuracy": 0.866, "loss": 0.37, "model_bytes": 246824}}
# ignored when comparing: wall-clock times and the PID only a local process has
VOLATILE = ("startTime", "completionTime", "elapsed_s", "conditions", *KUBE_ONLY_KEYS, "lastReport")


def local_status(exit_codes: dict[str, int | None], report: dict[str, Any], phase: str) -> dict[str, Any]:
    state = JobStatus("mnist-mistnet")
    state.transition(RUNNING, "WorkersStarted", "3 worker processes started")
    if phase != RUNNING:
        state.transition(phase, "x", "y")
    processes = [ProcessState(name, role, pid=1000 + index, exit_code=exit_codes[name], memory_limit_bytes=limit)
                 for index, (name, role, limit) in enumerate(WORKERS)]
    return state.to_dict(processes, {"cloud": report})


def kube_status(exit_codes: dict[str, int | None], report: dict[str, Any]) -> dict[str, Any]:
    api = api_with(MNIST, NS)
    controller = Controller(api, reports=lambda *_: report, token_factory=lambda: "tok")
    controller.sync(NS, "mnist-mistnet")
    for name in exit_codes:  # the pods run (the job is Running), then reach these outcomes
        api.set_pod_phase(NS, f"mnist-mistnet-{name}", "Running")
    controller.sync(NS, "mnist-mistnet")
    for name, code in exit_codes.items():
        pod = f"mnist-mistnet-{name}"
        api.set_pod_phase(NS, pod, "Running" if code is None else ("Succeeded" if code == 0 else "Failed"), code)
    return controller.sync(NS, "mnist-mistnet").status


def strip(document: dict[str, Any]) -> dict[str, Any]:
    result = {key: value for key, value in document.items() if key not in VOLATILE}
    no_pid = lambda entry: {k: v for k, v in entry.items() if k != "pid"}  # noqa: E731
    result["aggregator"] = no_pid(result["aggregator"])
    result["workers"] = {name: no_pid(entry) for name, entry in result["workers"].items()}
    return result


@pytest.mark.parametrize("exit_codes,report,phase", [
    ({"cloud": None, "edge1": None, "edge2": None}, REPORT, RUNNING),
    ({"cloud": None, "edge1": 0, "edge2": 0}, REPORT, RUNNING),
    ({"cloud": 0, "edge1": 0, "edge2": 0}, FINAL, SUCCEEDED),
])
def test_operator_status_equals_local_status(exit_codes: dict, report: dict, phase: str) -> None:
    local = local_status(exit_codes, report, phase)
    kube = kube_status(exit_codes, report)
    assert kube["phase"] == local["phase"] == phase
    assert strip(kube) == strip(local)
    kube_types = [c["type"] for c in kube["conditions"] if c["type"] != "Training"]
    assert kube_types == [c["type"] for c in local["conditions"]]


def test_failed_worker_counts_agree_with_local() -> None:
    exit_codes = {"cloud": None, "edge1": 2, "edge2": 0}
    kube = kube_status(exit_codes, REPORT)
    local = local_status(exit_codes, REPORT, FAILED)
    assert kube["phase"] == FAILED
    assert strip(kube) == strip(local)
    assert (kube["active"], kube["succeeded"], kube["failed"]) == (1, 1, 1)


def test_local_status_json_is_unchanged_by_the_started_flag() -> None:
    """``started`` only adds a way to say "running" without a PID; a local process still counts by PID."""
    by_pid = ProcessState("edge1", "trainer", pid=42)
    assert JobStatus("j").to_dict([by_pid], {})["active"] == 1
    assert JobStatus("j").to_dict([ProcessState("edge1", "trainer")], {})["active"] == 0


def test_printer_column_texts() -> None:
    assert step_text({"stage": "training", "epoch": 3, "epochs": 10}) == "epoch 3/10"
    assert step_text({"stage": "waiting", "round": 2, "rounds": 5}) == "round 2/5"
    assert step_text({"stage": "receiving"}) == "receiving"
    assert score_text({"accuracy": 0.8765}) == "accuracy 0.8765"
    assert score_text({"mAP50": 0.5}) == "mAP50 0.5000"
    assert score_text({"history": [{"round": 1, "accuracy": 0.7}]}) == "accuracy 0.7000"
    assert score_text({}) == ""


def test_status_keys_match_the_crd_printer_columns() -> None:
    import yaml
    from kube_helpers import ROOT

    crd = yaml.safe_load((ROOT / "deploy" / "crds" / "federatedlearningjob.yaml").read_text())
    columns = {c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    document = kube_status({"cloud": None, "edge1": None, "edge2": None}, REPORT)
    for name, path in columns.items():
        if path.startswith(".status."):
            assert path.removeprefix(".status.") in document, name
    assert names.JOB_PLURAL == crd["spec"]["names"]["plural"]
