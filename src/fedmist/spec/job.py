"""One FederatedLearningJob with every reference resolved: what the launcher needs to start workers.

Why resolve up front: a missing Dataset, an undefined Secret or a bad ``epsilon`` must be reported (with
file, job, field path and value) before any process starts, not when a worker trips over it minutes later.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from fedmist.imports import is_import_path
from fedmist.spec.errors import ManifestError, ParamError
from fedmist.spec.load import Bundle
from fedmist.spec.manifests import FederatedLearningJob, Secret
from fedmist.spec.naming import dns_label, expand_node_name, unique_names
from fedmist.spec.params import DEFAULT_AGG_PORT, INJECTED_ENV_NAMES, MISTNET_NEEDS_EPSILON, JobParams, parse_params
from fedmist.spec.paths import resolve_import_url, resolve_url
from fedmist.spec.template import PodTemplate

JOB_KIND: Final = "FederatedLearningJob"
DEFAULT_RESTART_POLICY: Final = "OnFailure"
CONTAINER_ENV: Final = "template.spec.containers[0].env"
# Parameters the aggregator decides for everyone; a trainer that sets another value is a manifest bug.
# (``trainer`` is not one: each edge may run its own loop; the aggregator's is sent to edges that set none.)
SHARED_PARAMS: Final = ("aggregation_algorithm", "cut_layer", "model")
# Budgets each MistNet edge sets for itself: it applies the stricter of its own and the aggregator's (the floor).
EDGE_BUDGETS: Final = ("epsilon", "label_epsilon")


@dataclass(frozen=True)
class S3Credentials:
    """S3 access from a Secret, per Sedna's convention (annotations ``s3-endpoint``, ``s3-usehttps``)."""

    endpoint_url: str | None
    access_key_id: str | None
    secret_access_key: str | None
    use_https: bool = True

    @classmethod
    def from_secret(cls, secret: Secret) -> "S3Credentials":
        endpoint = secret.s3_endpoint
        if endpoint and "://" not in endpoint:
            endpoint = ("https://" if secret.s3_use_https else "http://") + endpoint
        values = secret.secret_values
        return cls(endpoint, values.get("ACCESS_KEY_ID"), values.get("SECRET_ACCESS_KEY"), secret.s3_use_https)


TLS_KEYS: Final = ("tls.crt", "tls.key", "ca.crt")  # kubernetes.io/tls keys, plus the CA trainers verify with
TOKEN_KEY: Final = "token"


@dataclass(frozen=True)
class ChannelSecret:
    """The control channel's credentials from the Secret named by ``spec.transmitter.ws.credentialName``:
    PEM texts of the aggregator's certificate, its key and the CA trainers trust (all or none), and the job
    token (empty: the launcher generates one)."""

    cert_pem: str = ""
    key_pem: str = ""
    ca_pem: str = ""
    token: str = ""
    name: str = ""  # the Secret's name (a cluster mounts it by name)

    @property
    def has_tls(self) -> bool:
        return bool(self.cert_pem)


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process. ``env`` is the template's container env as given (``TEST_DATASET_URL`` resolved
    like any url); ``field_path`` locates the worker in the job (``spec.trainingWorkers[1]``)."""

    name: str
    role: str
    node_name: str | None
    image: str | None
    args: tuple[str, ...]
    env: dict[str, str]
    memory_limit_bytes: int | None
    restart_policy: str = DEFAULT_RESTART_POLICY
    dataset_name: str | None = None
    dataset_url: str | None = None
    dataset_format: str | None = None
    field_path: str = ""
    credentials: S3Credentials | None = None


@dataclass(frozen=True)
class ResolvedJob:
    name: str
    namespace: str
    aggregator: WorkerSpec
    trainers: tuple[WorkerSpec, ...]
    model_name: str
    model_url: str
    model_format: str
    pretrained_model_url: str | None
    transmitter: str
    agg_data_path: str | None
    s3: S3Credentials | None
    source_files: tuple[Path, ...]
    channel_secret: ChannelSecret | None = None
    warnings: tuple[str, ...] = ()  # one line each: settings that are valid but worth a look

    @property
    def workers(self) -> tuple[WorkerSpec, ...]:
        return (self.aggregator, *self.trainers)

    @property
    def job_file(self) -> Path:
        return self.source_files[0]

    def worker(self, name: str) -> WorkerSpec:
        """The worker called ``name`` (KeyError if none)."""
        return {worker.name: worker for worker in self.workers}[name]

    def params_for(self, worker: WorkerSpec) -> JobParams:
        """``worker``'s validated parameters; errors name the job file and the full template field path."""
        try:
            return parse_params(worker.env, where=str(self.job_file), role=worker.role)
        except ParamError as exc:
            raise ParamError(self.job_file, JOB_KIND, self.name, f"{worker.field_path}.{CONTAINER_ENV}.{exc.field}",
                             exc.problem, exc.value) from None

    def worker_env(self, worker: WorkerSpec, agg_ip: str, agg_port: int = DEFAULT_AGG_PORT) -> dict[str, str]:
        """The process env of DESIGN section 4: the template env, then the injected contract on top (any
        case-variant of a contract name in the template is dropped). Empty values are left out."""
        params = self.params_for(worker)
        credentials = self.s3 or worker.credentials
        injected = {
            "JOB_NAME": self.name,
            "NAMESPACE": self.namespace,
            "WORKER_NAME": worker.name,
            "PARTICIPANTS_COUNT": str(params.participants_count or len(self.trainers)),
            "TRANSMITTER": self.transmitter,
            "AGG_DATA_PATH": self.agg_data_path or "",
            "S3_ENDPOINT_URL": (credentials.endpoint_url if credentials else None) or "",
            "ACCESS_KEY_ID": (credentials.access_key_id if credentials else None) or "",
            "SECRET_ACCESS_KEY": (credentials.secret_access_key if credentials else None) or "",
            "MODEL_URL": self.model_url,
            "PRETRAINED_MODEL_URL": self.pretrained_model_url or "",
            **_ROLE_ENV[worker.role](self, worker, agg_ip, agg_port),
        }
        contract = frozenset(INJECTED_ENV_NAMES) | injected.keys()
        env = {key: value for key, value in worker.env.items() if key.upper() not in contract}
        env.update({key: value for key, value in injected.items() if value})
        return env


def _aggregator_env(job: ResolvedJob, worker: WorkerSpec, agg_ip: str, agg_port: int) -> dict[str, str]:
    return {"AGG_BIND_PORT": str(agg_port)}


def _trainer_env(job: ResolvedJob, worker: WorkerSpec, agg_ip: str, agg_port: int) -> dict[str, str]:
    return {
        "AGG_IP": agg_ip,
        "AGG_PORT": str(agg_port),
        "TRAIN_DATASET_URL": worker.dataset_url or "",
        "DATASET_NAME": worker.dataset_name or "",
        "DATASET_FORMAT": worker.dataset_format or "",
        "MODEL_NAME": job.model_name,
    }


_ROLE_ENV: Final[dict[str, Callable[[ResolvedJob, WorkerSpec, str, int], dict[str, str]]]] = {
    "aggregator": _aggregator_env,
    "trainer": _trainer_env,
}


def resolve_job(bundle: Bundle, job_name: str | None = None,
                environ: Mapping[str, str] | None = None) -> ResolvedJob:
    """Resolve the bundle's only job (or ``job_name``) and validate every worker's parameters.
    ``environ`` (default ``os.environ``, read now) expands ``$VAR`` node names. Raises ``ManifestError``."""
    job = _select_job(bundle, job_name)
    refs = _References(bundle, job)
    spec = job.spec
    model = refs.get("Model", spec.aggregation_worker.model.name, "spec.aggregationWorker.model.name")
    pretrained = (refs.get("Model", spec.pretrained_model.name, "spec.pretrainedModel.name")
                  if spec.pretrained_model else None)
    s3_spec = spec.transmitter.s3 if spec.transmitter else None
    secret = (refs.get("Secret", s3_spec.credential_name, "spec.transmitter.s3.credentialName")
              if s3_spec and s3_spec.credential_name else None)
    ws_spec = spec.transmitter.ws if spec.transmitter else None
    channel_secret = (_channel_secret(refs, ws_spec.credential_name)
                      if ws_spec and ws_spec.credential_name else None)
    env_source = os.environ if environ is None else environ
    build = _WorkerBuilder(bundle.source_of(JOB_KIND, job.name).parent, bundle.path_map, env_source)
    aggregator = build(spec.aggregation_worker.template, "aggregator", "spec.aggregationWorker",
                       "aggregator", refs.credentials("Model", model.name, model.spec.credential_name))
    trainers = []
    for index, worker in enumerate(spec.training_workers):
        path = f"spec.trainingWorkers[{index}]"
        dataset = refs.get("Dataset", worker.dataset.name, f"{path}.dataset.name")
        trainers.append(replace(
            build(worker.template, "trainer", path, f"trainer-{index + 1}",
                  refs.credentials("Dataset", dataset.name, dataset.spec.credential_name)),
            dataset_name=dataset.name, dataset_url=dataset.spec.url, dataset_format=dataset.spec.format))
    workers = [aggregator, *trainers]
    names = unique_names([worker.name for worker in workers])
    workers = [replace(worker, name=name) for worker, name in zip(workers, names)]
    resolved = ResolvedJob(
        name=job.name, namespace=job.metadata.namespace or "default",
        aggregator=workers[0], trainers=tuple(workers[1:]),
        model_name=model.name, model_url=model.spec.url, model_format=model.spec.format,
        pretrained_model_url=pretrained.spec.url if pretrained else None,
        transmitter="s3" if s3_spec else "ws",
        agg_data_path=s3_spec.agg_data_path if s3_spec else None,
        s3=S3Credentials.from_secret(secret) if secret else None,
        source_files=refs.files(),
        channel_secret=channel_secret,
    )
    return replace(resolved, warnings=_check_params(resolved))


def _channel_secret(refs: "_References", name: str) -> ChannelSecret:
    """Read and check the TLS/token Secret: the three TLS keys come together, each a PEM block."""
    field = "spec.transmitter.ws.credentialName"
    secret: Secret = refs.get("Secret", name, field)
    values = secret.secret_values
    present = [key for key in TLS_KEYS if values.get(key)]
    if present and len(present) < len(TLS_KEYS):
        missing = [key for key in TLS_KEYS if key not in present]
        raise ManifestError(refs.source_of_secret(name), "Secret", name, f"data.{missing[0]}",
                            f"a TLS Secret needs all of {', '.join(TLS_KEYS)}; {', '.join(missing)} missing")
    for key in present:
        if "-----BEGIN " not in values[key]:
            raise ManifestError(refs.source_of_secret(name), "Secret", name, f"data.{key}",
                                "must be PEM text (-----BEGIN ...)")
    if not present and not values.get(TOKEN_KEY):
        raise ManifestError(refs.source_of_secret(name), "Secret", name, "data",
                            f"names neither TLS keys ({', '.join(TLS_KEYS)}) nor a {TOKEN_KEY!r}")
    return ChannelSecret(values.get("tls.crt", ""), values.get("tls.key", ""), values.get("ca.crt", ""),
                         values.get(TOKEN_KEY, ""), name)


def _select_job(bundle: Bundle, job_name: str | None) -> FederatedLearningJob:
    files = ", ".join(str(path) for path in bundle.files) or "<no files>"
    if job_name is not None:
        if job_name not in bundle.jobs:
            raise ManifestError(files, None, None, None, f"no {JOB_KIND} named {job_name!r} is defined", job_name)
        return bundle.jobs[job_name]
    if len(bundle.jobs) != 1:
        names = ", ".join(sorted(bundle.jobs))
        problem = (f"{len(bundle.jobs)} {JOB_KIND} documents are defined ({names}); name the one to run"
                   if bundle.jobs else f"no {JOB_KIND} is defined")
        raise ManifestError(files, None, None, None, problem)
    return next(iter(bundle.jobs.values()))


class _References:
    """Looks up the documents a job names, remembering their files; a missing one is an error."""

    def __init__(self, bundle: Bundle, job: FederatedLearningJob) -> None:
        self._bundle = bundle
        self._job = job
        self._files = [bundle.source_of(JOB_KIND, job.name)]

    def get(self, kind: str, name: str, field: str, referrer: tuple[str, str] | None = None) -> Any:
        by_kind, by_name = referrer or (JOB_KIND, self._job.name)
        found = self._bundle.of_kind(kind).get(name)
        if found is None:
            raise ManifestError(self._bundle.source_of(by_kind, by_name), by_kind, by_name, field,
                                f"no {kind} named {name!r} is defined", name)
        source = self._bundle.source_of(kind, name)
        if source not in self._files:
            self._files.append(source)
        return found

    def credentials(self, kind: str, name: str, secret_name: str | None) -> S3Credentials | None:
        """S3 credentials for a Dataset/Model with ``spec.credentialName``."""
        if not secret_name:
            return None
        return S3Credentials.from_secret(self.get("Secret", secret_name, "spec.credentialName", (kind, name)))

    def source_of_secret(self, name: str) -> Path:
        return self._bundle.source_of("Secret", name)

    def files(self) -> tuple[Path, ...]:
        return tuple(self._files)


class _WorkerBuilder:
    """Turns a PodTemplate into a ``WorkerSpec`` with a (not yet unique) DNS-label name."""

    def __init__(self, job_dir: Path, path_map: Mapping[str, str], environ: Mapping[str, str]) -> None:
        self._job_dir = job_dir
        self._path_map = path_map
        self._environ = environ

    def __call__(self, template: PodTemplate, role: str, field_path: str, default_name: str,
                 credentials: S3Credentials | None) -> WorkerSpec:
        container = template.container
        raw_node = template.spec.node_name
        node_name = expand_node_name(raw_node, self._environ) if raw_node else None
        env = {key: (_resolve_test_url(value, self._job_dir, self._path_map)
                     if key.lower() == "test_dataset_url" else value)
               for key, value in container.env_dict.items()}
        return WorkerSpec(
            name=(dns_label(node_name) if node_name else "") or default_name,
            role=role, node_name=node_name, image=container.image, args=container.args, env=env,
            memory_limit_bytes=container.memory_limit_bytes,
            restart_policy=template.spec.restart_policy or DEFAULT_RESTART_POLICY,
            field_path=field_path, credentials=credentials)


def _resolve_test_url(value: str, job_dir: Path, path_map: Mapping[str, str]) -> str:
    """TEST_DATASET_URL: a user loader's import path keeps its form (only path-valued options are resolved);
    anything else is a path or url like a Dataset's."""
    if is_import_path(value):
        try:
            return resolve_import_url(value, job_dir, path_map)
        except ValueError:
            return value  # parse_params reports nothing here; the worker's loader names the problem
    return resolve_url(value, job_dir, path_map)


def _check_params(job: ResolvedJob) -> tuple[str, ...]:
    """Parse every worker's env now, and catch settings that contradict the aggregator or the job; return the
    warnings about valid settings that still deserve a look."""
    params = {worker.name: job.params_for(worker) for worker in job.workers}
    leader = params[job.aggregator.name]
    mistnet = leader.aggregation_algorithm == "mistnet"
    for worker in job.workers:
        mine = params[worker.name]
        keys = {key.lower(): key for key in worker.env}
        if mine.participants_count is not None and mine.participants_count > len(job.trainers):
            _fail(job, worker, keys["participants_count"],
                  f"must not exceed the number of trainingWorkers ({len(job.trainers)})", mine.participants_count)
        for name in SHARED_PARAMS:
            if name in keys and getattr(mine, name) != getattr(leader, name):
                _fail(job, worker, keys[name],
                      f"differs from the aggregationWorker's value {getattr(leader, name)!r}", getattr(mine, name))
        if mistnet and worker.role == "trainer" and mine.epsilon is None:
            # every edge decides its own privacy: the aggregator's rule, for each training worker too
            raise ParamError(job.job_file, JOB_KIND, job.name, f"{worker.field_path}.{CONTAINER_ENV}.epsilon",
                             MISTNET_NEEDS_EPSILON)
    if not mistnet:
        return ()
    trainers = [(worker.name, params[worker.name]) for worker in job.trainers]
    return tuple(warning for name in EDGE_BUDGETS
                 if (warning := _budget_warning(name, getattr(leader, name),
                                                [(edge, getattr(mine, name)) for edge, mine in trainers])))


def _budget_warning(name: str, floor: float | None, edges: list[tuple[str, float | None]]) -> str | None:
    """One line when the edges' values differ from the aggregator's, saying which value each edge will use: the
    stricter (smaller) of its own and the job's floor; unset means no noise (labels in clear)."""
    if all(own == floor for _, own in edges):
        return None
    uses = []
    for edge, own in edges:
        if own is not None and (floor is None or own < floor):
            uses.append(f"{edge} uses {own:g} (its own)")
        elif floor is None:
            uses.append(f"{edge} sends labels in clear (the floor)")
        else:
            uses.append(f"{edge} uses {floor:g} (the floor)")
    shown = "unset" if floor is None else f"{floor:g}"
    return f"{name} differs: aggregator {shown} (the job's floor); {', '.join(uses)}"


def _fail(job: ResolvedJob, worker: WorkerSpec, key: str, problem: str, value: object) -> None:
    raise ParamError(job.job_file, JOB_KIND, job.name, f"{worker.field_path}.{CONTAINER_ENV}.{key}", problem, value)
