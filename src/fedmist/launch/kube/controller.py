"""One reconcile pass against a ``KubeApi``: read the job and its world, plan (``reconcile``), apply.

The operator (kopf) calls ``Controller.sync`` on job events, on pod events of the job, and on a timer; tests
call it against ``MemoryApi``. Bad manifests fail the job with the one-line error, never the operator.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fedmist.launch.kube import names
from fedmist.launch.kube.api import Conflict, KubeApi, NotFound
from fedmist.launch.kube.reconcile import Desired, Observed, Plan, Policy, policy_for, reconcile
from fedmist.launch.kube.render import RenderOptions, credential_secrets
from fedmist.launch.kube.source import from_objects
from fedmist.launch.status import FAILED, now_iso
from fedmist.spec.errors import ManifestError

log = logging.getLogger("fedmist.operator")

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

    def sync(self, namespace: str, name: str) -> Plan | None:
        """Reconcile the job once; returns the applied plan (None when the job is gone)."""
        body = self.api.get(names.JOB_KIND, namespace, name)
        if body is None:
            return None
        others = [*self.api.list("Dataset", namespace), *self.api.list("Model", namespace)]
        others += self._secrets(body, namespace)
        try:
            loaded = from_objects(body, others)
        except ManifestError as exc:
            return self._invalid(body, str(exc))
        uid = body["metadata"].get("uid", names.UID_PLACEHOLDER)
        desired = Desired(loaded.job, loaded.raw_spec, credential_secrets(loaded.bundle, loaded.job),
                          RenderOptions(uid=uid, default_image=self.image, spec_hash=loaded.spec_hash))
        pods = self.api.list("Pod", namespace, names.job_labels(name))
        aggregator = next((p for p in pods if p["metadata"].get("labels", {}).get(names.LABEL_TYPE)
                           == "aggregation" and not p["metadata"].get("deletionTimestamp")), None)
        observed = Observed(
            status=body.get("status") or {}, pods=pods,
            service=self.api.get("Service", namespace, names.service_name(name)) is not None,
            token_secret=self.api.get("Secret", namespace, names.token_secret_name(name)) is not None,
            report=self.reports(namespace, name, aggregator),
            annotations=body["metadata"].get("annotations") or {})
        try:
            plan = reconcile(desired, observed, self.clock(), self.token_factory(),
                             policy_for(observed.annotations, self.policy))
        except ManifestError as exc:
            return self._invalid(body, str(exc))
        self.apply(namespace, name, plan)
        return plan

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
        meta = body["metadata"]
        status = dict(body.get("status") or {})
        condition = {"type": FAILED, "status": "True", "reason": "InvalidSpec", "message": message,
                     "lastTransitionTime": now_iso()}
        status.update(phase=FAILED, conditions=[condition], completionTime=status.get("completionTime") or now_iso())
        plan = Plan(status=status)
        log.error("%s/%s: %s", meta.get("namespace"), meta["name"], message)
        self.api.patch_status(names.JOB_KIND, meta.get("namespace", "default"), meta["name"], status)
        return plan

    def apply(self, namespace: str, name: str, plan: Plan) -> None:
        """Carry the plan out; a create that races another (409) or a delete of a gone pod (404) is fine."""
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
        self.api.patch_status(names.JOB_KIND, namespace, name, plan.status)
        for dataset, samples in plan.dataset_samples.items():
            self._patch_quietly("Dataset", namespace, dataset, {"numberOfSamples": samples})
        for model, metrics in plan.model_metrics.items():
            self._patch_quietly("Model", namespace, model, {"metrics": metrics, "updateTime": now_iso()})

    def _patch_quietly(self, kind: str, namespace: str, name: str, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` in a Dataset's/Model's status, keeping the rest of it."""
        current = self.api.get(kind, namespace, name)
        if current is None:
            log.warning("%s %s/%s is gone; status not recorded", kind, namespace, name)
            return
        merged = {**(current.get("status") or {}), **fields}
        if merged == current.get("status"):
            return
        try:
            self.api.patch_status(kind, namespace, name, merged)
        except NotFound:
            log.warning("%s %s/%s is gone; status not recorded", kind, namespace, name)
