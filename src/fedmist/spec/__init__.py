"""Sedna-style manifests (Dataset, Model, Secret, FederatedLearningJob): loading, validation, the env
contract. Light by design (pydantic + PyYAML, never torch) so the CLI can check a job file instantly."""

from fedmist.spec.errors import ManifestError, ManifestWarning, ParamError
from fedmist.spec.job import ResolvedJob, S3Credentials, WorkerSpec, resolve_job
from fedmist.spec.load import Bundle, load_manifests
from fedmist.spec.params import DEFAULT_AGG_PORT, JobParams, parse_params

__all__ = [
    "DEFAULT_AGG_PORT", "Bundle", "JobParams", "ManifestError", "ManifestWarning", "ParamError",
    "ResolvedJob", "S3Credentials", "WorkerSpec", "load_manifests", "parse_params", "resolve_job",
]
