"""One reconcile pass against a ``KubeApi``: read the job and its world, plan (``reconcile``), apply.

The operator (kopf) calls ``Controller.sync`` on job events, on pod events of the job, and on a timer; tests
call it against ``MemoryApi``. Bad manifests fail the job with the one-line error, never the operator.

Why a lock per job *and* conditional status writes: kopf runs sync handlers in a thread pool, so a burst of
pod events would plan the same job concurrently (duplicate pods, lost retry counters); the lock serializes
one operator's syncs, and ``resourceVersion`` on the status write catches anyone else (a second operator,
a user's edit): on 409 the pass re-reads everything and plans again. Nothing is written when nothing
changed, so a finished or invalid job is quiet. A job being deleted is left to the garbage collector.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from fedmist.launch.kube import names
from fedmist.launch.kube.api import Conflict, KubeApi, NotFound
from fedmist.launch.kube.reconcile import Desired, Observed, Plan, Policy, policy_for, reconcile
from fedmist.launch.kube.render import RenderOptions, credential_secrets
from fedmist.launch.kube.source import from_objects
from fedmist.launch.status import FAILED, SUCCEEDED, now_iso
from fedmist.spec.errors import ManifestError

log = logging.getLogger("fedmist.operator")
CONFLICT_RETRIES: Final = 3
INVALID_SPEC: Final = "InvalidSpec"
NATIVE_SIDECARS: Final = (1, 29)  # init containers with restartPolicy: Always (KEP-753)
# status keys that change with the clock alone: a difference only there is not worth a write
VOLATILE_KEYS: Final = ("elapsed_s",)

# (namespace, job name, aggregator pod) -> the aggregator's report, or None when unreachable.
ReportSource = Callable[[str, str, Mapping[str, Any] | None], Mapping[str, Any] | None]


def no_reports(namespace: str, job: str, pod: Mapping[str, Any] | None) -> None:
    return None


@dataclass
class Controller:
    api: KubeApi
    reports: ReportSource = no_reports
    clock: Callable[[], float] = time.time
    token_factory: Callable[[], str] = lambda: secrets.token_urlsafe(32)
    policy: Policy = field(default_factory=Policy)
    image: str = names.DEFAULT_IMAGE

    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _native: bool | None = None

    def sync(self, namespace: str, name: str) -> Plan | None:
        """Reconcile the job once; returns the applied plan (None when the job is gone or being deleted)."""
        with self._guard:
            lock = self._locks.setdefault((namespace, name), threading.Lock())
        with lock:
            for attempt in range(1, CONFLICT_RETRIES + 1):
                try:
                    return self._sync_once(namespace, name)
                except Conflict as exc:
                    if attempt == CONFLICT_RETRIES:
                        raise
                    log.info("%s/%s: status changed meanwhile (%s); planning again", namespace, name, exc)
        return None

    def native_sidecars(self) -> bool:
        """Whether the server runs native sidecars (>= 1.29); asked once. Older servers get the status
        server as a plain second container that exits once its final report was read (``render``)."""
        if self._native is None:
            version = self.api.server_version()
            self._native = version is None or version >= NATIVE_SIDECARS
            if version is not None and not self._native:
                log.warning("Kubernetes %d.%d has no native sidecars (>= %d.%d): the aggregator's status server "
                            "runs as a second container that exits after the final report was read",
                            *version, *NATIVE_SIDECARS)
        return self._native

    def _sync_once(self, namespace: str, name: str) -> Plan | None:
        body = self.api.get(names.JOB_KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # gone, or being deleted: its objects go with it (owner references)
        others = [*self.api.list("Dataset", namespace), *self.api.list("Model", namespace)]
        others += self._secrets(body, namespace)
        try:
            loaded = from_objects(body, others)
        except ManifestError as exc:
            return self._invalid(body, str(exc))
        stored = body.get("status") or {}
        if _invalid_spec(stored):  # the missing Dataset/Model/Secret exists now: start afresh
            log.info("%s/%s: the spec is valid now; starting the job", namespace, name)
            stored = {}
        uid = body["metadata"].get("uid", names.UID_PLACEHOLDER)
        desired = Desired(loaded.job, loaded.raw_spec, credential_secrets(loaded.bundle, loaded.job),
                          RenderOptions(uid=uid, default_image=self.image, spec_hash=loaded.spec_hash,
                                        native_sidecar=self.native_sidecars()))
        pods = self.api.list("Pod", namespace, names.job_labels(name))
        aggregator = next((p for p in pods if p["metadata"].get("labels", {}).get(names.LABEL_TYPE)
                           == "aggregation" and not p["metadata"].get("deletionTimestamp")), None)
        observed = Observed(
            status=stored, pods=pods,
            service=self.api.get("Service", namespace, names.service_name(name)) is not None,
            token_secret=self.api.get("Secret", namespace, names.token_secret_name(name)) is not None,
            report=self._report(namespace, name, stored, aggregator, loaded.job.aggregator.name),
            annotations=body["metadata"].get("annotations") or {})
        try:
            plan = reconcile(desired, observed, self.clock(), self.token_factory(),
                             policy_for(observed.annotations, self.policy))
        except ManifestError as exc:
            return self._invalid(body, str(exc))
        self.apply(namespace, name, plan, body)
        return plan

    def _report(self, namespace: str, name: str, stored: Mapping[str, Any], pod: Mapping[str, Any] | None,
                worker: str) -> Mapping[str, Any] | None:
        """The aggregator's report, asked only while its pod still runs and the job is not decided: a finished
        pod's IP is free for any other pod, and a report read there (seen: another job's aggregator) would
        overwrite this job's status. A report of another worker is ignored for the same reason."""
        if pod is None or stored.get("phase") in (SUCCEEDED, FAILED) \
                or (pod.get("status") or {}).get("phase") in (SUCCEEDED, FAILED):
            return None
        report = self.reports(namespace, name, pod)
        return report if report is None or report.get("worker") in (None, worker) else None

    def _secrets(self, body: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
        """The Secrets the job's transmitter, Datasets and Models name (only those: least privilege)."""
        wanted = set()
        transmitter = (body.get("spec") or {}).get("transmitter") or {}
        if (transmitter.get("s3") or {}).get("credentialName"):
            wanted.add(transmitter["s3"]["credentialName"])
        for kind in ("Dataset", "Model"):
            wanted |= {o["spec"]["credentialName"] for o in self.api.list(kind, namespace)
                       if (o.get("spec") or {}).get("credentialName")}
        found = [self.api.get("Secret", namespace, secret) for secret in sorted(wanted)]
        return [secret for secret in found if secret is not None]

    def _invalid(self, body: Mapping[str, Any], message: str) -> Plan:
        """Fail the job with the one-line reason, once: the same reason again writes and logs nothing."""
        meta = body["metadata"]
        stored = body.get("status") or {}
        previous = next((c for c in stored.get("conditions", []) if c.get("type") == FAILED), None)
        status = dict(stored)
        condition = {"type": FAILED, "status": "True", "reason": INVALID_SPEC, "message": message,
                     "lastTransitionTime": now_iso()}
        if previous and {k: previous.get(k) for k in ("reason", "message")} == {"reason": INVALID_SPEC,
                                                                                 "message": message}:
            condition = dict(previous)
        status.update(phase=FAILED, conditions=[condition], completionTime=status.get("completionTime") or now_iso())
        plan = Plan(status=status)
        if status != stored:  # logged once written (a lost race plans again: one line, not two)
            self._write_status(meta.get("namespace", "default"), meta["name"], status, body)
            log.error("%s/%s: %s", meta.get("namespace"), meta["name"], message)
        return plan

    def apply(self, namespace: str, name: str, plan: Plan, body: Mapping[str, Any] | None = None) -> None:
        """Carry the plan out; a create that races another (409) or a delete of a gone pod (404) is fine.
        The status is written only when it changed, and only over the version ``body`` was read at."""
        for pod in plan.delete:
            try:
                self.api.delete("Pod", namespace, pod)
            except NotFound:
                pass
        for obj in plan.create:
            try:
                self.api.create(obj)
            except Conflict:
                log.info("%s %s exists already", obj["kind"], obj["metadata"]["name"])
        if body is None or _changed(plan.status, body.get("status") or {}):
            self._write_status(namespace, name, plan.status, body)
        for dataset, samples in plan.dataset_samples.items():
            self._patch_quietly("Dataset", namespace, dataset, {"numberOfSamples": samples})
        for model, metrics in plan.model_metrics.items():
            self._patch_quietly("Model", namespace, model, {"metrics": metrics}, stamp="updateTime")

    def _write_status(self, namespace: str, name: str, status: Mapping[str, Any],
                      body: Mapping[str, Any] | None) -> None:
        version = (body or {}).get("metadata", {}).get("resourceVersion")
        try:
            self.api.patch_status(names.JOB_KIND, namespace, name, status, resource_version=version)
        except NotFound:
            log.info("%s/%s is gone; status not written", namespace, name)

    def _patch_quietly(self, kind: str, namespace: str, name: str, fields: Mapping[str, Any],
                       stamp: str | None = None) -> None:
        """Set ``fields`` in a Dataset's/Model's status, keeping the rest of it; nothing when they are set
        already (then ``stamp``, a time field, is not refreshed either)."""
        current = self.api.get(kind, namespace, name)
        if current is None:
            log.warning("%s %s/%s is gone; status not recorded", kind, namespace, name)
            return
        old = current.get("status") or {}
        if all(old.get(key) == value for key, value in fields.items()):
            return
        merged = {**old, **fields, **({stamp: now_iso()} if stamp else {})}
        try:
            self.api.patch_status(kind, namespace, name, merged,
                                  resource_version=current["metadata"].get("resourceVersion"))
        except NotFound:
            log.warning("%s %s/%s is gone; status not recorded", kind, namespace, name)
        except Conflict:
            log.info("%s %s/%s changed meanwhile; status written on the next pass", kind, namespace, name)


def _invalid_spec(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == FAILED and c.get("reason") == INVALID_SPEC for c in status.get("conditions", []))


def _changed(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether the status moved, apart from keys that follow the clock alone."""
    def strip(status: Mapping[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in status.items() if key not in VOLATILE_KEYS}

    return strip(new) != strip(old)

