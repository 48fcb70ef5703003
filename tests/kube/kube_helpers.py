"""Helpers for the Kubernetes tests: the example jobs, rendered or loaded into an in-memory API.

A module of its own (not conftest.py): test modules import from it, and ``conftest`` is not a unique name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fedmist.launch.kube.api import MemoryApi
from fedmist.launch.kube.render import RenderOptions, credential_secrets, render_job
from fedmist.launch.kube.source import LoadedJob, from_files

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "examples" / "mnist-mistnet" / "job.yaml"
SEED = ROOT / "examples" / "yolov5-coco128-mistnet" / "job.yaml"
SEED_NODES = {"CLOUD_NODE": "cloud-node-1", "EDGE1_NODE": "edge-node-1", "EDGE2_NODE": "edge-node-2"}


def load(path: Path, environ: dict[str, str] | None = None) -> LoadedJob:
    return from_files([path], None, None, environ or {})


def render(path: Path, environ: dict[str, str] | None = None, **options: Any) -> list[dict[str, Any]]:
    loaded = load(path, environ)
    opts = RenderOptions(token="t0ken", spec_hash=loaded.spec_hash, **options)
    return render_job(loaded.job, loaded.raw_spec, credential_secrets(loaded.bundle, loaded.job), opts)


def by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    """name -> value (or the valueFrom mapping) of the worker container's env."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]}


def api_with(path: Path, namespace: str = "default") -> MemoryApi:
    """A MemoryApi holding every document of ``path`` (the job last, as ``kubectl apply -f`` would)."""
    api = MemoryApi()
    for document in yaml.safe_load_all(path.read_text()):
        if isinstance(document, dict):
            document["metadata"]["namespace"] = namespace
            api.create(document)
    return api
