"""Where a job comes from: manifest files (``fedmist render``) or API objects (the operator).

Both end in the same ``Bundle`` -> ``ResolvedJob`` path as ``fedmist run``, so a manifest that validates
locally renders the same workers on a cluster. From the API, urls are node host paths and are not
re-rooted against a manifest folder; Secret values are dropped before parsing (the operator needs only
the Secret's existence and S3 annotations: pods get the values by ``secretKeyRef``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fedmist.launch.kube.names import JOB_KIND, spec_hash
from fedmist.spec.errors import ManifestError
from fedmist.spec.job import ResolvedJob, resolve_job
from fedmist.spec.load import Bundle, load_manifests
from fedmist.spec.manifests import KINDS


@dataclass(frozen=True)
class LoadedJob:
    job: ResolvedJob
    bundle: Bundle
    raw_spec: dict[str, Any]

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.raw_spec)


def from_files(paths: list[Path], path_map: Mapping[str, str] | None = None, job_name: str | None = None,
               environ: Mapping[str, str] | None = None) -> LoadedJob:
    """Load and resolve like ``fedmist run``; keep the job's raw ``spec`` (templates as written)."""
    bundle = load_manifests(paths, dict(path_map or {}))
    job = resolve_job(bundle, job_name, environ)
    source = bundle.source_of(JOB_KIND, job.name)
    for document in yaml.safe_load_all(source.read_text(encoding="utf-8")):
        if (isinstance(document, dict) and document.get("kind") == JOB_KIND
                and (document.get("metadata") or {}).get("name") == job.name):
            return LoadedJob(job, bundle, dict(document["spec"]))
    raise ManifestError(source, JOB_KIND, job.name, None, "job document not found on re-reading the file")


def _strip_secret(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj.get("apiVersion", "v1"), "kind": "Secret",
            "metadata": {key: value for key, value in (obj.get("metadata") or {}).items()
                         if key in ("name", "namespace", "annotations")}}


def from_objects(job_body: Mapping[str, Any], others: Iterable[Mapping[str, Any]]) -> LoadedJob:
    """Resolve a job from API objects (the job, and the Datasets, Models and Secrets of its namespace).
    Unknown fields and server-set metadata are ignored; errors start ``namespace <ns>: <Kind>/<name>: ...``."""
    bundle = Bundle()
    namespace = (job_body.get("metadata") or {}).get("namespace", "default")
    for raw in [job_body, *others]:
        kind = raw.get("kind")
        model_cls = KINDS.get(kind) if isinstance(kind, str) else None
        if model_cls is None:
            continue
        clean = _strip_secret(raw) if kind == "Secret" else {k: v for k, v in raw.items() if k != "status"}
        name = (raw.get("metadata") or {}).get("name", "?")
        where = Path(f"namespace {namespace}")
        try:
            manifest = model_cls.model_validate(clean)
        except Exception as exc:  # noqa: BLE001 - pydantic's error becomes the job's one-line failure reason
            raise ManifestError(where, kind, name, None, str(exc).splitlines()[-1].strip()) from None
        bundle.add(manifest, where)
    bundle.files = (Path(f"namespace {namespace}"),)
    job = resolve_job(bundle, job_body["metadata"]["name"], environ={})
    return LoadedJob(job, bundle, dict(job_body.get("spec") or {}))
