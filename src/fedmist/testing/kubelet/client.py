"""The process kubelet's API client (stdlib only): the few calls a kubelet makes, with a bearer token.

Why its own and not the operator's ``RestApi``: the kubelet is a different actor (node identity, pods of every
namespace, status subresource, watch), and it must not depend on what the operator's client does or lacks.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml


class ApiClient:
    def __init__(self, url: str, token: str = "", timeout_s: float = 10.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.url, self.token, self.timeout_s, self.tls = url.rstrip("/"), token, timeout_s, tls

    @classmethod
    def from_kubeconfig(cls, path: Path) -> ApiClient:
        """The current context's server and credentials: a token, or a client certificate (files or ``-data``),
        with the cluster's CA or ``insecure-skip-tls-verify`` (a kube-apiserver built for a test)."""
        config = yaml.safe_load(path.read_text())
        context = _named(config, "contexts", config.get("current-context", ""))
        cluster = _named(config, "clusters", context.get("cluster", ""))
        user = _named(config, "users", context.get("user", ""))
        tls = None
        if cluster["server"].startswith("https"):
            tls = ssl.create_default_context(cafile=_file(cluster, "certificate-authority"))
            if cluster.get("insecure-skip-tls-verify"):
                tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
            cert = _file(user, "client-certificate")
            if cert:
                tls.load_cert_chain(cert, _file(user, "client-key"))
        return cls(cluster["server"], str(user.get("token", "")), tls=tls)

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
             query: dict[str, str] | None = None) -> Any:
        """The decoded reply; None for 404 (the object is gone, which a kubelet must take in stride)."""
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self.tls) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def get(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        return self.call("GET", f"/api/v1/namespaces/{namespace}/{plural}/{name}")

    def list(self, plural: str) -> tuple[list[dict[str, Any]], str]:
        reply = self.call("GET", f"/api/v1/{plural}") or {}
        return reply.get("items") or [], str((reply.get("metadata") or {}).get("resourceVersion", ""))

    def patch_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.call("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status", {"status": status},
                  "application/merge-patch+json")

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Finish a graceful deletion (what the kubelet does once the containers stopped)."""
        try:
            self.call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
                      {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: another pod of that name by now
                raise

    def watch(self, plural: str, since: str, timeout_s: int = 30) -> Iterator[dict[str, Any]]:
        """Events of one watch request (ends at ``timeout_s`` or on a disconnect)."""
        query = {"watch": "true", "resourceVersion": since, "timeoutSeconds": str(timeout_s)}
        request = urllib.request.Request(f"{self.url}/api/v1/{plural}?{urllib.parse.urlencode(query)}")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=timeout_s + 10, context=self.tls) as reply:
            for line in reply:
                if line.strip():
                    yield json.loads(line)


def _named(config: Mapping[str, Any], section: str, name: str) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            return dict(entry.get(section[:-1]) or {})
    raise ValueError(f"kubeconfig: no {section[:-1]} named {name!r}")


def _file(entry: Mapping[str, Any], key: str) -> str | None:
    """A path for ``key`` (as written) or for ``key-data`` (decoded into a private temporary file)."""
    if entry.get(key):
        return str(entry[key])
    data = entry.get(f"{key}-data")
    if not data:
        return None
    handle = tempfile.NamedTemporaryFile("wb", prefix="kubelet-", suffix=".pem", delete=False)
    with handle:
        handle.write(base64.b64decode(data))
    return handle.name
