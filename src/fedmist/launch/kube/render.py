"""The Kubernetes objects of one job: aggregator Pod, ``<job>-aggregation`` Service, one Pod per training
worker, and the per-job token Secret. Pure: a ``ResolvedJob`` and the job's raw ``spec`` in, dicts out.

Why pure: ``fedmist render`` (GitOps, ``kubectl apply --dry-run=client``) and the operator must create the
very same objects, and both are then testable without a cluster. Every pod gets the env contract of DESIGN
section 4 from ``ResolvedJob.worker_env`` (the function the local launcher uses), with two differences that
keep secrets out of pod specs: S3 keys and the job token come by ``secretKeyRef``.

Images: the template's image is kept as written (a Sedna example image does not contain fedmist, so such
a manifest needs ``--image``/``RenderOptions.image``); a template without an image gets the fedmist image.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from fedmist.launch.kube import names
from fedmist.launch.kube.volumes import aggregator_state_volume, host_mounts, trainer_state_volume, volume_objects
from fedmist.spec.errors import ManifestError
from fedmist.spec.job import ResolvedJob, WorkerSpec
from fedmist.spec.load import Bundle
from fedmist.spec.params import parse_params

SECRET_ENV: Final = ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY")
STATE_DIR: Final = "/var/lib/fedmist"
REPORT_DIR: Final = "/var/run/fedmist"
REPORT_FILE: Final = f"{REPORT_DIR}/report.json"
TLS_DIR: Final = "/etc/fedmist/tls"
# which keys of the channel Secret each role mounts: the aggregator serves, trainers only verify
TLS_FILES: Final = {"aggregator": {"FEDMIST_TLS_CERT": "tls.crt", "FEDMIST_TLS_KEY": "tls.key"},
                    "trainer": {"FEDMIST_TLS_CA": "ca.crt"}}


@dataclass(frozen=True)
class RenderOptions:
    """``uid``: the job's uid for owner references (a placeholder offline); ``token``: when set, the token
    Secret is rendered with it (the operator always sets it); ``image``: replaces every worker image;
    ``native_sidecar``: False for servers before 1.29 (the status server becomes a plain container)."""

    uid: str = names.UID_PLACEHOLDER
    token: str | None = None
    image: str | None = None
    default_image: str = names.DEFAULT_IMAGE
    owner_refs: bool = True
    spec_hash: str = ""
    native_sidecar: bool = True


def credential_secrets(bundle: Bundle, job: ResolvedJob) -> dict[str, str]:
    """Worker name -> the Secret its S3 keys come from: the transmitter's ``credentialName`` for everyone
    (as ``worker_env`` does), else the worker's own Dataset/Model ``credentialName``."""
    raw = bundle.jobs[job.name].spec
    shared = raw.transmitter.s3.credential_name if raw.transmitter and raw.transmitter.s3 else None
    result: dict[str, str] = {}
    for worker in job.workers:
        own = (bundle.datasets[worker.dataset_name].spec.credential_name if worker.dataset_name
               else bundle.models[job.model_name].spec.credential_name)
        if shared or own:
            result[worker.name] = shared or own  # type: ignore[assignment]
    return result


def plain_ws_warnings(job: ResolvedJob) -> list[str]:
    """What ``fedmist render`` says about a job that would talk plain ws between pods.

    Why: the operator makes no per-job CA, so without a TLS Secret the pods dial ``ws://<job>-aggregation``, a
    network address, and each worker refuses to start unless its env sets ``allow_plain_ws`` (the job's explicit
    choice that bits and weights may cross the cluster network unencrypted). Said here, before anything runs."""
    if job.channel_secret and job.channel_secret.has_tls:
        return []
    missing = [worker.field_path or worker.name for worker in job.workers
               if not parse_params(worker.env, role=worker.role).allow_plain_ws]
    if not missing:
        return []
    return [f"job {job.name} has no TLS Secret (spec.transmitter.ws.credentialName with tls.crt/tls.key/ca.crt), "
            f"so its pods talk plain ws and {', '.join(missing)} will refuse to start: set allow_plain_ws: "
            '"true" in every worker\'s env to accept that bits and weights cross the network unencrypted, or '
            "name a TLS Secret"]


def render_job(job: ResolvedJob, raw_spec: Mapping[str, Any], secrets: Mapping[str, str],
               options: RenderOptions = RenderOptions()) -> list[dict[str, Any]]:
    """Every object of the job, in apply order (Secret, Service, aggregator, trainers).
    ``raw_spec`` is the job's ``spec`` as written (templates keep fields fedmist does not model);
    ``secrets`` maps worker names to their S3 credential Secret (see ``credential_secrets``)."""
    objects: list[dict[str, Any]] = []
    if options.token is not None:
        objects.append(token_secret(job, options))
    objects.append(aggregation_service(job, options))
    objects += [worker_pod(job, worker, raw_spec, secrets.get(worker.name), options) for worker in job.workers]
    return objects


def _metadata(job: ResolvedJob, name: str, options: RenderOptions, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": job.namespace, "labels": labels}
    if options.owner_refs:
        meta["ownerReferences"] = [names.owner_reference(job.name, options.uid)]
    return meta


def token_secret(job: ResolvedJob, options: RenderOptions) -> dict[str, Any]:
    """The bearer token every worker presents (and keys frame MACs with); one per job, never in a pod spec."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _metadata(job, names.token_secret_name(job.name), options, names.job_labels(job.name)),
            "stringData": {names.TOKEN_KEY: options.token or ""}}


def aggregation_service(job: ResolvedJob, options: RenderOptions) -> dict[str, Any]:
    """``<job>-aggregation``: where trainers reach the aggregator (``AGG_IP``), as in Sedna."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(job, names.service_name(job.name), options, names.job_labels(job.name)),
        "spec": {
            "selector": names.job_labels(job.name, "aggregator"),
            "ports": [{"name": names.AGG_PORT_NAME, "port": names.AGG_PORT, "targetPort": names.AGG_PORT,
                       "protocol": "TCP"}],
        },
    }


def raw_template(raw_spec: Mapping[str, Any], worker: WorkerSpec) -> dict[str, Any]:
    """The worker's PodTemplateSpec as written, found by its field path (``spec.trainingWorkers[1]``)."""
    if worker.role == "aggregator":
        return copy.deepcopy(dict(raw_spec["aggregationWorker"]["template"]))
    index = int(worker.field_path.rsplit("[", 1)[1].rstrip("]"))
    return copy.deepcopy(dict(raw_spec["trainingWorkers"][index]["template"]))


def worker_env(job: ResolvedJob, worker: WorkerSpec, secret: str | None) -> list[dict[str, Any]]:
    """The env contract as a container ``env`` list; secret values only as ``secretKeyRef``."""
    agg_ip = f"{names.service_name(job.name)}.{job.namespace}"
    plain = job.worker_env(worker, agg_ip=agg_ip, agg_port=names.AGG_PORT)
    env = [{"name": key, "value": value} for key, value in plain.items() if key not in SECRET_ENV]
    channel = job.channel_secret  # spec.transmitter.ws.credentialName: the user's token and/or certificate
    token_from = (channel.name, names.TOKEN_KEY) if channel and channel.token else \
        (names.token_secret_name(job.name), names.TOKEN_KEY)
    env += [{"name": "FEDMIST_STATE_DIR", "value": f"{STATE_DIR}/state"},
            {"name": "FEDMIST_TOKEN", "valueFrom": {"secretKeyRef": {"name": token_from[0], "key": token_from[1]}}}]
    if channel and channel.has_tls:
        env += [{"name": name, "value": f"{TLS_DIR}/{key}"} for name, key in TLS_FILES[worker.role].items()]
    if worker.role == "aggregator":
        env.append({"name": "FEDMIST_STATUS_FILE", "value": REPORT_FILE})
    if secret:
        env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for key in SECRET_ENV]
    return env


def thread_env(container: Mapping[str, Any]) -> list[dict[str, str]]:
    """Torch/OpenMP threads from ``resources.limits.cpu`` (rounded up): in a container ``os.cpu_count()``
    is the node's, and more threads than the CPU quota only adds throttling. Nothing when no limit."""
    raw = str(((container.get("resources") or {}).get("limits") or {}).get("cpu") or "")
    try:
        cores = -(-int(raw[:-1]) // 1000) if raw.endswith("m") else math.ceil(float(raw))
    except ValueError:
        return []
    threads = str(max(1, cores))
    return [{"name": "FEDMIST_THREADS", "value": threads}, {"name": "OMP_NUM_THREADS", "value": threads}]


def _status_sidecar(image: str, native: bool = True) -> dict[str, Any]:
    """Serves the aggregator's report file over HTTP for the operator. Native (>= 1.29): an init container
    with ``restartPolicy: Always``, stopped by the kubelet once the aggregator exits. Older servers drop that
    field, and such an init container would never let the aggregator start: there it is a plain container
    that exits by itself once the final report was read, so the pod can still complete."""
    sidecar: dict[str, Any] = {"restartPolicy": "Always"} if native else {}
    return {
        "name": "fedmist-status", "image": image, **sidecar,
        "command": ["python", "-m", "fedmist.launch.kube.statusd"],
        "args": ["--file", REPORT_FILE, "--port", str(names.STATUS_PORT), *([] if native else ["--exit-after-final"])],
        "ports": [{"name": names.STATUS_PORT_NAME, "containerPort": names.STATUS_PORT, "protocol": "TCP"}],
        "volumeMounts": [{"name": "fedmist-report", "mountPath": REPORT_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    }


def worker_pod(job: ResolvedJob, worker: WorkerSpec, raw_spec: Mapping[str, Any], secret: str | None,
               options: RenderOptions, attempt: int = 0) -> dict[str, Any]:
    """One worker's Pod from its template: nodeName, resources and other fields kept; the first container
    runs ``fedmist worker aggregate|train`` with the env contract; ``restartPolicy: Never`` because retries
    (with backoff, per the template's restartPolicy) are the operator's job."""
    if worker.node_name and worker.node_name.startswith("$"):
        raise ManifestError(job.job_file, "FederatedLearningJob", job.name,
                            f"{worker.field_path}.template.spec.nodeName",
                            "is an unset shell variable; write the node's name (or export it before `fedmist render`)",
                            worker.node_name)
    template = raw_template(raw_spec, worker)
    spec: dict[str, Any] = dict(template.get("spec") or {})
    containers = [dict(c) for c in spec.get("containers") or [{}]]
    main = containers[0]
    volumes, mounts = volume_objects(host_mounts(job, worker))
    # state must survive the pod: a trainer's noise seed and privacy ledger, the aggregator's checkpoints
    volumes.append(trainer_state_volume(job.namespace, worker.name) if worker.role == "trainer"
                   else aggregator_state_volume(job.namespace, options.uid, options.spec_hash))
    mounts.append({"name": "fedmist-state", "mountPath": STATE_DIR})
    if job.channel_secret and job.channel_secret.has_tls:  # only the files this role needs (no key on trainers)
        keys = TLS_FILES[worker.role].values()
        volumes.append({"name": "fedmist-tls", "secret": {"secretName": job.channel_secret.name, "defaultMode": 0o400,
                                                          "items": [{"key": k, "path": k} for k in keys]}})
        mounts.append({"name": "fedmist-tls", "mountPath": TLS_DIR, "readOnly": True})
    if worker.role == "aggregator":
        volumes.append({"name": "fedmist-report", "emptyDir": {}})
        mounts.append({"name": "fedmist-report", "mountPath": REPORT_DIR})
        main["ports"] = [*main.get("ports", []), {"name": names.AGG_PORT_NAME, "containerPort": names.AGG_PORT,
                                                  "protocol": "TCP"}]
        sidecar = _status_sidecar(options.image or options.default_image, options.native_sidecar)
        if options.native_sidecar:
            spec["initContainers"] = [*spec.get("initContainers", []), sidecar]
        else:
            containers.append(sidecar)
    main.update(
        name=main.get("name") or "worker",
        image=options.image or main.get("image") or options.default_image,
        command=["fedmist"],
        args=["worker", names.WORKER_COMMANDS[worker.role], *worker.args],
        env=[*worker_env(job, worker, secret), *thread_env(main)],
        volumeMounts=[*main.get("volumeMounts", []), *mounts],
    )
    spec.update(containers=containers, restartPolicy="Never", volumes=[*spec.get("volumes", []), *volumes])
    # workers never call the API: no ServiceAccount token in their pods unless the template asks for one
    spec.setdefault("automountServiceAccountToken", False)
    # the same environment in every attempt of a worker: a checkpoint is resumed only by a run of the same
    # spec, and the worker's digest covers its environment (HOSTNAME is the pod's hostname, and service links
    # add a variable per Service of the namespace, which come and go with other jobs)
    spec.setdefault("hostname", names.pod_name(job.name, worker.name))
    spec.setdefault("enableServiceLinks", False)
    if worker.node_name:
        spec["nodeName"] = worker.node_name
    template_meta = template.get("metadata") or {}
    metadata = _metadata(job, names.pod_name(job.name, worker.name, attempt), options,
                         {**template_meta.get("labels", {}), **names.job_labels(job.name, worker.role, worker.name)})
    metadata["annotations"] = {**template_meta.get("annotations", {}),
                               names.ANNOTATION_SPEC_HASH: options.spec_hash}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
