"""The FederatedLearningJob ``status``: ``launch/status.py``'s document plus what ``kubectl get fl`` shows.

Why build on ``JobStatus.to_dict``: a user must read the same numbers from ``status.json`` of a local run and
from the CR of a cluster run. Pods become ``ProcessState`` (exit code of the worker container, restarts from
the operator's retries), the aggregator's report is the same dict the local launcher reads from
``FEDMIST_STATUS_FILE``, and only Kubernetes-specific keys are added on top: one ``Training`` condition
updated in place, ``step``/``score``/``workersReady`` for printer columns, ``specHash`` and ``retries``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Final

from fedmist.launch.status import FAILED, PENDING, RUNNING, SUCCEEDED, JobStatus, ProcessState, now_iso
from fedmist.spec.job import ResolvedJob

TRAINING: Final = "Training"
PODS_PENDING: Final = "PodsPending"
KUBE_CONDITIONS: Final = (TRAINING, PODS_PENDING)  # conditions of the operator's own, not JobStatus's
# container waiting reasons that are just progress, not a reason to tell the user
STARTING: Final = ("ContainerCreating", "PodInitializing")
# Keys the operator adds to ``JobStatus.to_dict``'s document (everything else is the local launcher's).
KUBE_ONLY_KEYS: Final = ("step", "score", "workersReady", "specHash", "retries")


def job_status_from(status: Mapping[str, Any], job: str) -> JobStatus:
    """Rebuild the state machine from the CR's stored status (the operator keeps no memory of its own)."""
    state = JobStatus(job)
    state.phase = status.get("phase") or PENDING
    state.start_time = status.get("startTime") or state.start_time
    state.completion_time = status.get("completionTime")
    state.conditions = [dict(c) for c in status.get("conditions", []) if c.get("type") not in KUBE_CONDITIONS]
    return state


def pod_outcome(pod: Mapping[str, Any]) -> tuple[str, int | None]:
    """(phase, exit code) of the pod's worker container (the first): the status sidecar may still run, so
    the container's own termination decides, not only the pod phase."""
    main = (pod.get("spec", {}).get("containers") or [{}])[0].get("name")
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if container.get("name") == main and terminated:
            code = int(terminated.get("exitCode", 1))
            return (SUCCEEDED if code == 0 else FAILED), code
    phase = status.get("phase") or PENDING
    if phase in (SUCCEEDED, FAILED):
        return phase, 0 if phase == SUCCEEDED else 1
    return phase, None


def waiting_reason(pod: Mapping[str, Any]) -> str | None:
    """Why a Pending pod does not run (the scheduler's refusal, an image that cannot be pulled, a node that
    does not report), or None when it is not pending."""
    status = pod.get("status") or {}
    if pod_outcome(pod)[0] != PENDING:
        return None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{condition.get('reason') or 'Unschedulable'}: {condition.get('message') or ''}".rstrip(": ")
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] not in STARTING:
            return f"container {container.get('name')}: {waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        return "not scheduled yet"
    return "starting" if status.get("hostIP") else f"waiting for node {node} (no kubelet has taken it)"


def pending_condition(previous: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> dict[str, str] | None:
    """``PodsPending``: which of the job's pods wait, and why (``Unschedulable`` when the scheduler refused
    one); None when none waits. Its transition time stays while pods keep waiting."""
    waiting = [(str(p["metadata"]["name"]), why) for p in pods if (why := waiting_reason(p)) is not None]
    if not waiting:
        return None
    reason = "Unschedulable" if any(why.startswith("Unschedulable") for _, why in waiting) else "Waiting"
    condition = {"type": PODS_PENDING, "status": "True", "reason": reason,
                 "message": "; ".join(f"{name}: {why}" for name, why in sorted(waiting)),
                 "lastTransitionTime": now_iso()}
    old = next((c for c in previous.get("conditions", []) if c.get("type") == PODS_PENDING), None)
    if old and old.get("status") == "True":
        condition["lastTransitionTime"] = old.get("lastTransitionTime", condition["lastTransitionTime"])
    return condition


def processes_from(job: ResolvedJob, pods: Mapping[str, Mapping[str, Any] | None],
                   restarts: Mapping[str, int]) -> list[ProcessState]:
    """One ``ProcessState`` per worker from its current pod (None: not created yet)."""
    result = []
    for worker in job.workers:
        pod = pods.get(worker.name)
        phase, code = pod_outcome(pod) if pod is not None else (PENDING, None)
        result.append(ProcessState(worker.name, worker.role, exit_code=code, restarts=restarts.get(worker.name, 0),
                                   memory_limit_bytes=worker.memory_limit_bytes,
                                   started=phase in (RUNNING, SUCCEEDED, FAILED)))
    return result


def step_text(progress: Mapping[str, Any]) -> str:
    """``epoch 3/10`` (MistNet cloud training) or ``round 2/5`` (FedAvg family), else the stage."""
    for unit, total in (("epoch", "epochs"), ("round", "rounds")):
        if unit in progress:
            return f"{unit} {progress[unit]}/{progress.get(total, '?')}"
    return str(progress.get("stage", ""))


def score_text(metrics: Mapping[str, Any]) -> str:
    """The headline metric: final accuracy or mAP50, else the latest test accuracy of the history."""
    latest = (metrics.get("history") or [{}])[-1]
    for source, key, label in ((metrics, "accuracy", "accuracy"), (metrics, "mAP50", "mAP50"),
                               (latest, "test_accuracy", "accuracy"), (latest, "accuracy", "accuracy")):
        if isinstance(source.get(key), (int, float)):
            return f"{label} {source[key]:.4f}"
    return ""


def training_condition(previous: Mapping[str, Any] | None, phase: str, progress: Mapping[str, Any],
                       score: str) -> dict[str, str]:
    """The one ``Training`` condition: message and reason follow the rounds/epochs in place; the
    transition time changes only when its status flips (Kubernetes' convention)."""
    status = "True" if phase == RUNNING else "False"
    stage = str(progress.get("stage") or phase.lower())
    message = ", ".join(part for part in (step_text(progress), score) if part) or stage
    condition = {"type": TRAINING, "status": status, "reason": stage.title().replace(" ", ""), "message": message,
                 "lastTransitionTime": now_iso(), "lastUpdateTime": now_iso()}
    if previous and previous.get("status") == status:
        condition["lastTransitionTime"] = previous.get("lastTransitionTime", condition["lastTransitionTime"])
        if previous.get("message") == message and previous.get("reason") == condition["reason"]:
            condition["lastUpdateTime"] = previous.get("lastUpdateTime", condition["lastUpdateTime"])
    return condition


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _elapsed(start: str, end: str | None) -> float:
    """Seconds since ``startTime`` (the operator restarts; a monotonic clock would not survive that)."""
    stop = _parse_time(end) if end else datetime.now(timezone.utc)
    return round(max(0.0, (stop - _parse_time(start)).total_seconds()), 3)


def status_document(state: JobStatus, processes: list[ProcessState], report: Mapping[str, Any] | None,
                    previous: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The CR status: ``JobStatus.to_dict`` for the same processes and aggregator report, plus the
    Kubernetes keys. ``previous`` is the stored status (for the Training condition's times)."""
    aggregator = next(p.name for p in processes if p.role == "aggregator")
    document = state.to_dict(processes, {aggregator: dict(report)} if report else {})
    document["elapsed_s"] = _elapsed(state.start_time, state.completion_time)
    old = next((c for c in previous.get("conditions", []) if c.get("type") == TRAINING), None)
    score = score_text(document["metrics"])
    document["conditions"] = [*document["conditions"],
                              training_condition(old, state.phase, document["progress"], score)]
    ready = sum(1 for p in processes if p.is_started and p.exit_code in (None, 0))
    document.update(step=step_text(document["progress"]), score=score,
                    workersReady=f"{ready}/{len(processes)}", **extra)
    return document


def dataset_samples(job: ResolvedJob, report: Mapping[str, Any] | None) -> dict[str, int]:
    """Dataset name -> ``numberOfSamples``, from the aggregator's view of each training worker."""
    seen = (report or {}).get("workers", {})
    result = {}
    for worker in job.trainers:
        samples = seen.get(worker.name, {}).get("samples")
        if worker.dataset_name and isinstance(samples, int) and samples > 0:
            result[worker.dataset_name] = samples
    return result


def is_terminal(phase: str) -> bool:
    return phase in (SUCCEEDED, FAILED)
