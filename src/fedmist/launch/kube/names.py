"""Names, labels and annotations shared by the renderer, the reconciler and the deploy files.

Sedna's label keys are kept (``federatedlearningjob.sedna.io/name`` / ``.../worker-type``) so dashboards and
``kubectl get pods -l ...`` habits of Sedna users carry over.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from fedmist.spec.naming import DNS_LABEL_MAX, dns_label
from fedmist.spec.params import DEFAULT_AGG_PORT

GROUP: Final = "sedna.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
JOB_KIND: Final = "FederatedLearningJob"
JOB_PLURAL: Final = "federatedlearningjobs"

LABEL_JOB: Final = "federatedlearningjob.sedna.io/name"
LABEL_TYPE: Final = "federatedlearningjob.sedna.io/worker-type"
LABEL_WORKER: Final = "fedmist.io/worker"
ANNOTATION_SPEC_HASH: Final = "fedmist.io/spec-hash"
ANNOTATION_BACKOFF_LIMIT: Final = "fedmist.io/backoff-limit"

# Sedna's worker types, keyed by fedmist's role names.
WORKER_TYPES: Final = {"aggregator": "aggregation", "trainer": "train"}
WORKER_COMMANDS: Final = {"aggregator": "aggregate", "trainer": "train"}

AGG_PORT: Final = DEFAULT_AGG_PORT  # one port constant: spec/params.py
AGG_PORT_NAME: Final = "tcp-0"
STATUS_PORT: Final = 7364
STATUS_PORT_NAME: Final = "http-status"
TOKEN_KEY: Final = "token"
DEFAULT_IMAGE: Final = "fedmist/worker:0.1"
UID_PLACEHOLDER: Final = "00000000-0000-0000-0000-000000000000"


def service_name(job: str) -> str:
    """``<job>-aggregation``: the name Sedna gives the aggregator's Service."""
    return f"{job}-aggregation"


def token_secret_name(job: str) -> str:
    return f"{job}-fedmist-token"


def pod_name(job: str, worker: str, attempt: int = 0) -> str:
    """``<job>-<worker>`` for the first attempt, ``<job>-<worker>-<n>`` for retry n; always a DNS label, so a
    retry never collides with a pod of the previous attempt that is still terminating."""
    suffix = f"-{attempt}" if attempt else ""
    base = dns_label(f"{job}-{worker}")[: DNS_LABEL_MAX - len(suffix)].rstrip("-")
    return base + suffix


def job_labels(job: str, role: str | None = None, worker: str | None = None) -> dict[str, str]:
    labels = {LABEL_JOB: job}
    if role is not None:
        labels[LABEL_TYPE] = WORKER_TYPES[role]
    if worker is not None:
        labels[LABEL_WORKER] = worker
    return labels


def spec_hash(spec: Mapping[str, Any]) -> str:
    """A short digest of the job's ``spec``: pods carry it, and a pod with another digest is stale."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def owner_reference(job: str, uid: str) -> dict[str, Any]:
    """Makes Kubernetes' garbage collector delete the job's objects with the job (cascade)."""
    return {"apiVersion": API_VERSION, "kind": JOB_KIND, "name": job, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}
