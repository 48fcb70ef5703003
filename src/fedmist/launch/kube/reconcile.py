"""Reconcile one FederatedLearningJob: from the job and the pods observed, decide what to create, delete and
write as status. Pure (no client, no kopf, no clock of its own), so every failure path is tested offline.

Failure policy (pods run with ``restartPolicy: Never``; the template's policy selects the operator's):
``Never`` fails the job on the first failed pod; ``OnFailure`` and ``Always`` recreate it after an
exponential backoff (``base * 2^(n-1)``, capped) up to ``backoff limit`` restarts (annotation
``fedmist.io/backoff-limit`` on the job, default 6 like a Kubernetes Job), then the job fails. Exit code 2
means bad configuration and is never retried. A deleted pod is recreated while the job runs (a worker that
already succeeded is not rerun, unless the aggregator is retried: trainers of an earlier aggregator attempt
run again as ``-<n>``, since a failing aggregator ends them). A change of ``spec`` (its digest differs from ``status.specHash``)
deletes every pod of the job and starts over.

Phase: ``Pending`` until every worker's pod actually runs (or has run), with a ``PodsPending`` condition
naming the pods that wait and why (unschedulable, image pull, no kubelet on the node); then ``Running``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from fedmist.launch.kube import jobstatus, names
from fedmist.launch.kube.render import RenderOptions, aggregation_service, token_secret, worker_pod
from fedmist.launch.status import FAILED, PENDING, RUNNING, SUCCEEDED
from fedmist.spec.job import ResolvedJob, WorkerSpec

BAD_CONFIG_EXIT: Final = 2
TERMINATING_WAIT_S: Final = 2.0


@dataclass(frozen=True)
class Policy:
    backoff_base_s: float = 10.0
    backoff_max_s: float = 300.0
    backoff_limit: int = 6

    def delay(self, restarts: int) -> float:
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, restarts - 1))


@dataclass(frozen=True)
class Desired:
    """What the job should look like: the resolved job, its raw spec and how to render its objects."""

    job: ResolvedJob
    raw_spec: Mapping[str, Any]
    secrets: Mapping[str, str]
    options: RenderOptions


@dataclass(frozen=True)
class Observed:
    """What the API shows: the job's stored status and annotations, its pods, whether the Service and the
    token Secret exist, and the aggregator's latest report (None when it could not be read)."""

    status: Mapping[str, Any]
    pods: list[Mapping[str, Any]]
    service: bool
    token_secret: bool
    report: Mapping[str, Any] | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # pod names
    status: dict[str, Any] = field(default_factory=dict)
    requeue_after: float | None = None
    dataset_samples: dict[str, int] = field(default_factory=dict)
    model_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def wake(self, seconds: float) -> None:
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


def policy_for(annotations: Mapping[str, str], base: Policy = Policy()) -> Policy:
    raw = annotations.get(names.ANNOTATION_BACKOFF_LIMIT, "")
    return replace(base, backoff_limit=int(raw)) if raw.isdigit() else base


def reconcile(desired: Desired, observed: Observed, now: float, new_token: str,
              policy: Policy | None = None) -> Plan:
    """The plan that moves the job one step towards its spec. ``now`` is epoch seconds; ``new_token`` is
    used only when the token Secret is missing."""
    job, plan = desired.job, Plan()
    policy = policy or policy_for(observed.annotations)
    stored = dict(observed.status)
    digest = desired.options.spec_hash
    restarted = bool(stored.get("specHash")) and stored.get("specHash") != digest
    if restarted:
        stored = {"conditions": [c for c in stored.get("conditions", [])
                                 if c.get("type") not in (SUCCEEDED, FAILED)]}
    state = jobstatus.job_status_from(stored, job.name)
    if restarted:
        state.transition(RUNNING, "SpecChanged", "the job spec changed; workers are recreated")
        state.completion_time = None
    retries: dict[str, dict[str, Any]] = {k: dict(v) for k, v in stored.get("retries", {}).items()}

    live, stale = _sort_pods(job, observed.pods, digest)
    plan.delete += stale
    if not observed.token_secret:
        plan.create.append(token_secret(job, replace(desired.options, token=new_token)))
    if not observed.service:
        plan.create.append(aggregation_service(job, desired.options))

    current: dict[str, Mapping[str, Any] | None] = {}
    failure: tuple[str, str] | None = None
    for worker in job.workers:  # the aggregator first: a retry of it decides which trainers run again
        entry = retries.setdefault(worker.name, {"restarts": 0})
        aggregator_attempt = retries[job.aggregator.name]["restarts"]
        if worker.role == "trainer" and entry.setdefault("forAggregator", aggregator_attempt) < aggregator_attempt:
            previous = live.get(names.pod_name(job.name, worker.name, _attempt(entry)))
            if previous is not None and jobstatus.pod_outcome(previous)[0] not in (SUCCEEDED, FAILED):
                plan.delete.append(str(previous["metadata"]["name"]))  # it served the aggregator that is gone
            _rerun(entry, aggregator_attempt, retries[job.aggregator.name].get("notBefore", 0.0))
        pod = live.get(names.pod_name(job.name, worker.name, _attempt(entry)))
        current[worker.name] = pod
        if pod is None:
            if not jobstatus.is_terminal(state.phase) and not entry.get("succeeded"):
                _create_when_due(plan, desired, worker, entry, observed.pods, now)
            continue
        phase, code = jobstatus.pod_outcome(pod)
        if phase == SUCCEEDED:
            entry["succeeded"] = True
        elif phase == FAILED and failure is None and not jobstatus.is_terminal(state.phase):
            failure = _on_failure(plan, worker, entry, code, policy, now)
            if failure is None:
                current[worker.name] = None  # a retry is scheduled: the worker is pending again
                if (pod.get("status") or {}).get("phase") not in (SUCCEEDED, FAILED):
                    plan.delete.append(str(pod["metadata"]["name"]))  # a plain sidecar keeps it alive

    processes = jobstatus.processes_from(job, current, {k: v["restarts"] for k, v in retries.items()})
    if failure is not None:
        state.transition(FAILED, *failure)
        plan.delete += [str(p["metadata"]["name"]) for p in live.values()
                        if jobstatus.pod_outcome(p)[0] not in (SUCCEEDED, FAILED)]
    elif retries[job.aggregator.name].get("succeeded") and state.phase != SUCCEEDED:
        state.transition(SUCCEEDED, "JobCompleted", "the aggregator finished and saved the model")
    elif not jobstatus.is_terminal(state.phase) and state.phase != RUNNING and all(
            retries[w.name].get("succeeded") or (current[w.name] is not None
                                                  and jobstatus.pod_outcome(current[w.name])[0] != PENDING)
            for w in job.workers):
        state.transition(RUNNING, "WorkersRunning", f"all {len(job.workers)} workers are running")

    report = observed.report if observed.report is not None else stored.get("lastReport")
    plan.status = jobstatus.status_document(state, processes, report, observed.status,
                                            {"specHash": digest, "retries": retries})
    if report is not None:
        plan.status["lastReport"] = dict(report)
    waiting = None if jobstatus.is_terminal(state.phase) else jobstatus.pending_condition(
        observed.status, [pod for pod in current.values() if pod is not None])
    plan.status["conditions"] = [*plan.status["conditions"], *([waiting] if waiting else [])]
    plan.dataset_samples = jobstatus.dataset_samples(job, report)
    if state.phase == SUCCEEDED:
        plan.model_metrics = {job.model_name: plan.status["metrics"]}
    return plan


def _sort_pods(job: ResolvedJob, pods: list[Mapping[str, Any]], digest: str
               ) -> tuple[dict[str, Mapping[str, Any]], list[str]]:
    """(live pods of the current spec by name, names of pods of an older spec to delete). Pods already
    being deleted are neither live nor deleted again."""
    live: dict[str, Mapping[str, Any]] = {}
    stale: list[str] = []
    for pod in pods:
        meta = pod.get("metadata", {})
        if meta.get("labels", {}).get(names.LABEL_JOB) != job.name or meta.get("deletionTimestamp"):
            continue
        if meta.get("annotations", {}).get(names.ANNOTATION_SPEC_HASH) != digest:
            stale.append(meta["name"])
        else:
            live[meta["name"]] = pod
    return live, stale


def _attempt(entry: Mapping[str, Any]) -> int:
    """The worker's pod number: its own retries plus its reruns for a retried aggregator."""
    return int(entry["restarts"]) + int(entry.get("reruns", 0))


def _rerun(entry: dict[str, Any], aggregator_attempt: int, not_before: float) -> None:
    """A trainer whose pod served an earlier aggregator attempt runs again for the current one: a failing
    aggregator ends its trainers ("job failed", exit 0), and a retried aggregator with no trainer left would
    wait for nobody. Not a failure of the trainer's own, so it does not count against its backoff limit;
    its state folder (noise seed, ledger) lets it resume rather than start over."""
    entry["succeeded"] = False
    entry["reruns"] = int(entry.get("reruns", 0)) + 1
    entry["forAggregator"] = aggregator_attempt
    entry["notBefore"] = max(float(entry.get("notBefore", 0.0)), float(not_before))  # with its aggregator


def _create_when_due(plan: Plan, desired: Desired, worker: WorkerSpec, entry: dict[str, Any],
                     pods: list[Mapping[str, Any]], now: float) -> None:
    """Create the worker's pod for its current attempt, unless its backoff has not passed yet or a pod of
    that name is still terminating (then come back shortly)."""
    name = names.pod_name(desired.job.name, worker.name, _attempt(entry))
    not_before = float(entry.get("notBefore", 0.0))
    if now < not_before:
        plan.wake(not_before - now)
        return
    if any(p.get("metadata", {}).get("name") == name for p in pods):
        plan.wake(TERMINATING_WAIT_S)
        return
    plan.create.append(worker_pod(desired.job, worker, desired.raw_spec, desired.secrets.get(worker.name),
                                  desired.options, attempt=_attempt(entry)))


def _on_failure(plan: Plan, worker: WorkerSpec, entry: dict[str, Any], code: int | None, policy: Policy,
                now: float) -> tuple[str, str] | None:
    """Schedule a retry of a failed worker; return the job's failure (reason, message) when no retry is
    allowed."""
    where = f"worker {worker.name} ({worker.role}) exited with code {code}"
    entry["lastExitCode"] = code
    if worker.restart_policy == "Never":
        return "WorkerFailed", f"{where}; restartPolicy Never"
    if code == BAD_CONFIG_EXIT:
        return "WorkerFailed", f"{where} (bad configuration; not retried)"
    if entry["restarts"] >= policy.backoff_limit:
        return ("BackoffLimitExceeded",
                f"{where}; {entry['restarts']} restarts reached the backoff limit {policy.backoff_limit}")
    entry["restarts"] += 1
    delay = policy.delay(entry["restarts"])
    entry["notBefore"] = now + delay
    plan.wake(delay)
    return None
