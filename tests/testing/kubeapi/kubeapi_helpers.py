"""HTTP helpers for the emulated API's tests: every check goes over a real socket, as a client's would."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedmist.testing.kubeapi import KubeApiServer

REPO = Path(__file__).resolve().parents[3]
JOBS = "/apis/sedna.io/v1alpha1/namespaces/default/federatedlearningjobs"
PODS = "/api/v1/namespaces/default/pods"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def call(api: KubeApiServer, method: str, path: str, body: Any = None, token: str | None = "admin",
         content_type: str = "application/json") -> tuple[int, Any]:
    """(status code, decoded body) of one request; ``token="admin"`` is the admin's, None sends none."""
    host, port = urllib.parse.urlsplit(api.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {api.admin_token if token == 'admin' else token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    reply = conn.getresponse()
    data = reply.read()
    conn.close()
    return reply.status, json.loads(data) if data else None


def ok(api: KubeApiServer, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    code, reply = call(api, method, path, body, **kwargs)
    assert code in (200, 201), (code, reply)
    return reply


@contextmanager
def watch(api: KubeApiServer, path: str) -> Iterator[Iterator[dict[str, Any]]]:
    """The events of a watch request, one by one (each read waits at most 5 s)."""
    host, port = urllib.parse.urlsplit(api.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", path, headers={"Authorization": f"Bearer {api.admin_token}"})
    reply = conn.getresponse()
    assert reply.status == 200

    def events() -> Iterator[dict[str, Any]]:
        while line := reply.readline():
            if line.strip():
                yield json.loads(line)
    try:
        yield events()
    finally:
        conn.close()


def job_body(name: str = "j1", **spec_changes: Any) -> dict[str, Any]:
    spec = {"aggregationWorker": {"model": {"name": "m"}, "template": {"spec": {"containers": [{"name": "a"}]}}},
            "trainingWorkers": [{"dataset": {"name": "d"}, "template": {"spec": {}}}], **spec_changes}
    return {"apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "metadata": {"name": name},
            "spec": spec}


def pod_body(name: str, labels: dict[str, str] | None = None, node: str | None = None, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}, **meta},
            "spec": spec}
