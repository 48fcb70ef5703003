"""The process kubelet's API client (stdlib only): the few calls a kubelet makes, with a bearer token.

Why its own and not the operator's ``RestApi``: the kubelet is a different actor (node identity, pods of every
namespace, status subresource, watch), and it must not depend on what the operator's client does or lacks.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any


class ApiClient:
    def __init__(self, url: str, token: str, timeout_s: float = 10.0) -> None:
        self.url, self.token, self.timeout_s = url.rstrip("/"), token, timeout_s

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
             query: dict[str, str] | None = None) -> Any:
        """The decoded reply; None for 404 (the object is gone, which a kubelet must take in stride)."""
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
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
        request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=timeout_s + 10) as reply:
            for line in reply:
                if line.strip():
                    yield json.loads(line)
