"""``KubeApi`` over the Kubernetes REST API with the pod's service account (stdlib only).

Why not the ``kubernetes`` client: five verbs on six kinds do not justify its dependency tree (its
``python-dateutil>=3`` pin conflicts with boto3's ``<3`` in this project). Runs in-cluster only; for a
local try, ``kubectl proxy`` and ``FEDMIST_KUBE_URL=http://127.0.0.1:8001``.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from fedmist.launch.kube import names
from fedmist.launch.kube.api import Conflict, NotFound

SERVICE_ACCOUNT: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# kind -> (API prefix, plural)
RESOURCES: Final = {
    "Pod": ("/api/v1", "pods"), "Service": ("/api/v1", "services"), "Secret": ("/api/v1", "secrets"),
    "Dataset": (f"/apis/{names.API_VERSION}", "datasets"), "Model": (f"/apis/{names.API_VERSION}", "models"),
    names.JOB_KIND: (f"/apis/{names.API_VERSION}", names.JOB_PLURAL),
}


class RestApi:
    def __init__(self, base_url: str | None = None, timeout_s: float = 10.0) -> None:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = base_url or os.environ.get("FEDMIST_KUBE_URL") or f"https://{host}:{port}"
        self.timeout_s = timeout_s
        token_file = SERVICE_ACCOUNT / "token"
        self._token = token_file.read_text().strip() if token_file.exists() else ""
        ca = SERVICE_ACCOUNT / "ca.crt"
        self._ssl = ssl.create_default_context(cafile=str(ca) if ca.exists() else None)

    def _url(self, kind: str, namespace: str, name: str = "", sub: str = "") -> str:
        prefix, plural = RESOURCES[kind]
        path = f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")
        return self.base + path

    def _call(self, method: str, url: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s,
                                        context=self._ssl if url.startswith("https") else None) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(url) from None
            if exc.code == 409:
                raise Conflict(url) from None
            raise

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self._call("GET", self._url(kind, namespace, name))
        except NotFound:
            return None
        obj.setdefault("kind", kind)
        return obj

    def list(self, kind: str, namespace: str, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        url = self._url(kind, namespace)
        if labels:
            url += "?" + urllib.parse.urlencode({"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())})
        items = self._call("GET", url).get("items", [])
        for item in items:
            item.setdefault("kind", kind)
        return items

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._call("POST", self._url(obj["kind"], meta.get("namespace", "default")), dict(obj))

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        # JSON patch "add" on /status replaces it whole (merge patch would keep dropped nested keys)
        self._call("PATCH", self._url(kind, namespace, name, "status"),
                   [{"op": "add", "path": "/status", "value": dict(status)}], "application/json-patch+json")

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self._call("DELETE", self._url(kind, namespace, name), {"propagationPolicy": "Background"})


def http_report(namespace: str, job: str, pod: Mapping[str, Any] | None, timeout_s: float = 2.0
                ) -> dict[str, Any] | None:
    """The aggregator's report from its status sidecar, by pod IP (a finished pod is no Service endpoint)."""
    ip = ((pod or {}).get("status") or {}).get("podIP")
    if not ip:
        return None
    try:
        with urllib.request.urlopen(f"http://{ip}:{names.STATUS_PORT}/report", timeout=timeout_s) as reply:
            report = json.loads(reply.read())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None
