"""hostPath volumes for the host-path urls a worker reads or writes.

Why the file's own folder and never more: a pod that mounts ``/`` (or ``/data`` for ``/data/1/COCO``) of an
edge node sees far more than its dataset. A file url mounts its parent folder, a folder url the folder
itself; the mount path inside the container equals the host path, so the env contract's urls stay valid
unchanged. Inputs are mounted read-only; only the output model's folder is writable.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any, Final

from fedmist.imports import is_import_path
from fedmist.spec.errors import ManifestError
from fedmist.spec.job import ResolvedJob, WorkerSpec
from fedmist.spec.naming import dns_label, unique_names
from fedmist.spec.paths import is_remote

# Dataset formats whose url names a folder; the others (txt, csv index files) name a file.
FOLDER_FORMATS: Final = frozenset({"dir", "idx"})
# Where a trainer's state (noise seed, privacy ledger) lives on its edge node: <root>/<namespace>/<worker>.
EDGE_STATE_ROOT: Final = "/var/lib/fedmist/edges"
# Where an aggregator's state (checkpoints, feature store) lives on its node: <root>/<namespace>/<job uid>/<spec hash>.
JOB_STATE_ROOT: Final = "/var/lib/fedmist/jobs"


@dataclass(frozen=True)
class HostMount:
    """One host folder mounted at the same path; ``field`` says which url asked for it (for errors)."""

    path: str
    read_only: bool
    field: str


def _folder(url: str, is_file: bool, field: str, job: ResolvedJob) -> str | None:
    """The host folder to mount for ``url`` (None for an empty or remote url)."""
    if not url or is_remote(url):
        return None
    if not posixpath.isabs(url):
        raise ManifestError(job.job_file, "FederatedLearningJob", job.name, field,
                            "a url must be an absolute host path (or s3://) on Kubernetes", url)
    folder = posixpath.dirname(posixpath.normpath(url)) if is_file else posixpath.normpath(url)
    if folder == "/":
        raise ManifestError(job.job_file, "FederatedLearningJob", job.name, field,
                            "would mount the node's root folder; put the file in a folder of its own", url)
    return folder


def _data_folders(url: str, is_file: bool, field: str, job: ResolvedJob) -> list[str | None]:
    """Folders for a dataset url. A user loader's import path (``format: python``) is code, not a path: its
    path-valued options (``?root=/data/pngs``) are what it reads, so those are mounted (the package itself
    must be in the image)."""
    if not is_import_path(url):
        return [_folder(url, is_file, field, job)]
    from fedmist.imports import parse_query

    options = parse_query(url.partition("?")[2], field)
    return [_folder(value, _looks_like_file(value), field, job) for value in options.values()
            if posixpath.isabs(value)]


def _looks_like_file(url: str) -> bool:
    """TEST_DATASET_URL has no format field: a name with an extension (``test.txt``) is taken as a file."""
    return bool(posixpath.splitext(posixpath.basename(url.rstrip("/")))[1])


def host_mounts(job: ResolvedJob, worker: WorkerSpec) -> list[HostMount]:
    """The folders ``worker`` needs, deduplicated (a folder both read and written is mounted writable)."""
    wanted: list[tuple[str | None, bool, str]] = []
    if worker.role == "aggregator":
        test_url = next((v for k, v in worker.env.items() if k.lower() == "test_dataset_url"), "")
        wanted += [
            (_folder(job.model_url, True, "Model.spec.url", job), False, "Model.spec.url"),
            (_folder(job.pretrained_model_url or "", True, "spec.pretrainedModel", job), True,
             "spec.pretrainedModel"),
        ]
        wanted += [(folder, True, "TEST_DATASET_URL")
                   for folder in _data_folders(test_url, _looks_like_file(test_url), "TEST_DATASET_URL", job)]
    else:
        is_file = (worker.dataset_format or "dir") not in FOLDER_FORMATS
        field = f"{worker.field_path}.dataset"
        wanted += [(folder, True, field) for folder in _data_folders(worker.dataset_url or "", is_file, field, job)]
    merged: dict[str, HostMount] = {}
    for folder, read_only, field in wanted:
        if folder is None:
            continue
        known = merged.get(folder)
        merged[folder] = HostMount(folder, read_only and (known.read_only if known else True),
                                   known.field if known else field)
    return list(merged.values())


def volume_objects(mounts: list[HostMount]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod ``volumes``, container ``volumeMounts``) for ``mounts``; names are DNS labels from the paths."""
    names = unique_names([f"host-{dns_label(m.path) or 'path'}"[:63].rstrip("-") for m in mounts])
    volumes = [{"name": name, "hostPath": {"path": m.path, "type": "Directory" if m.read_only else "DirectoryOrCreate"}}
               for name, m in zip(names, mounts)]
    volume_mounts = [{"name": name, "mountPath": m.path, "readOnly": m.read_only} for name, m in zip(names, mounts)]
    return volumes, volume_mounts


def trainer_state_volume(namespace: str, worker: str) -> dict[str, Any]:
    """The volume holding a trainer's state folder: a hostPath on its edge node, ``EDGE_STATE_ROOT/<namespace>/
    <worker>``, created on first use.

    Why it must outlive the pod: the folder holds the edge's secret noise seed and its privacy ledger. In an
    emptyDir a restarted pod draws a fresh seed, so its resumed upload can never match the records the
    aggregator already holds, and the ledger of what this edge released is gone with the pod.

    Why a hostPath on the edge node and not a PersistentVolumeClaim: the seed is the edge's secret and the
    ledger its own account, so both stay on the machine that holds the data (a claim may be bound to network
    storage off the node, readable by whoever runs that storage); edge clusters (KubeEdge) often have no
    storage class to bind a claim at all; and the trainer pod is already pinned to its node by ``nodeName``,
    as its dataset's hostPath is, so every restart finds the same folder. Keyed by namespace and worker, not by
    job, because the ledger must add up every job this edge served. A pod that lands on another node (no
    nodeName) finds no seed and fails its resume in one line instead of resending under fresh noise.
    """
    return {"name": "fedmist-state",
            "hostPath": {"path": posixpath.join(EDGE_STATE_ROOT, dns_label(namespace) or "default",
                                                dns_label(worker) or "worker"),
                         "type": "DirectoryOrCreate"}}


def aggregator_state_volume(namespace: str, uid: str, spec_hash: str) -> dict[str, Any]:
    """The aggregator's state folder: a hostPath on its node, ``JOB_STATE_ROOT/<namespace>/<job uid>/<spec
    hash>``, created on first use.

    Why it must outlive the pod: it holds the round checkpoints and MistNet's feature store, so a recreated
    aggregator pod (deleted, evicted, or retried after a failure) resumes where the last one stopped instead
    of starting over. Why keyed by the job's uid and spec digest: a new job of the same name, or a changed
    spec (which restarts the job), must not resume an old run's checkpoint. The folders stay on the node after
    the job (the operator has no agent there): remove ``JOB_STATE_ROOT/<namespace>/<uid>`` when done.
    """
    return {"name": "fedmist-state",
            "hostPath": {"path": posixpath.join(JOB_STATE_ROOT, dns_label(namespace) or "default",
                                                dns_label(uid) or "job", dns_label(spec_hash) or "spec"),
                         "type": "DirectoryOrCreate"}}
