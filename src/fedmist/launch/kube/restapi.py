"""``KubeApi`` over the Kubernetes REST API (stdlib only), with the same login as kopf (``login.Credentials``).

Why not the ``kubernetes`` client: five verbs on six kinds do not justify its dependency tree (its
``python-dateutil>=3`` pin conflicts with boto3's ``<3`` in this project). The server, CA, token or client
certificate come from kopf's ``ConnectionInfo`` (in a pod: the ServiceAccount; outside: ``KUBECONFIG``), so
``KUBECONFIG=... fedmist operator`` needs no ``kubectl proxy``. A refusal raises ``ApiError`` with the
server's reason (the ``Status`` body's message); a 401 logs in again once (a rotated token).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from fedmist.launch.kube import names
from fedmist.launch.kube.api import ApiError, Conflict, NotFound
from fedmist.launch.kube.login import Connection, Credentials

# kind -> (API prefix, plural)
RESOURCES: Final = {
    "Pod": ("/api/v1", "pods"), "Service": ("/api/v1", "services"), "Secret": ("/api/v1", "secrets"),
    "Dataset": (f"/apis/{names.API_VERSION}", "datasets"), "Model": (f"/apis/{names.API_VERSION}", "models"),
    names.JOB_KIND: (f"/apis/{names.API_VERSION}", names.JOB_PLURAL),
}
ERROR_BODY_MAX: Final = 64 * 1024


@dataclass(frozen=True)
class StaticConnection:
    """A fixed server and optional bearer token (tests; a plain-HTTP ``kubectl proxy``)."""

    server: str
    token: str | None = None

    def as_http_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def as_ssl_context(self) -> Any:
        import ssl

        return ssl.create_default_context()


def api_error(method: str, path: str, code: int, body: bytes) -> ApiError:
    """The ``ApiError`` for a refusal, with the ``Status`` body's message when there is one."""
    reason, message = "", ""
    try:
        status = json.loads(body[:ERROR_BODY_MAX])
        if isinstance(status, dict):
            reason, message = str(status.get("reason") or ""), str(status.get("message") or "")
    except ValueError:
        message = body[:200].decode("utf-8", "replace").strip()
    text = f"{method} {path}: {code} {reason or 'error'}" + (f": {message}" if message else "")
    cls = NotFound if code == 404 else Conflict if code == 409 else ApiError
    return cls(text, code, reason)


class RestApi:
    def __init__(self, credentials: Credentials | str, timeout_s: float = 10.0) -> None:
        self.credentials = Credentials(StaticConnection(credentials)) if isinstance(credentials, str) else credentials
        self.timeout_s = timeout_s
        self._ssl: tuple[Connection, Any] | None = None

    def _context(self, connection: Connection) -> Any:
        """The SSL context of this login (built once per login: client certs are loaded from files)."""
        if self._ssl is None or self._ssl[0] is not connection:
            self._ssl = (connection, connection.as_ssl_context())
        return self._ssl[1]

    def _path(self, kind: str, namespace: str, name: str = "", sub: str = "") -> str:
        prefix, plural = RESOURCES[kind]
        return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        for attempt in (1, 2):
            connection = self.credentials.current()
            try:
                return self._send(connection, method, path, body, content_type)
            except ApiError as exc:
                if exc.code != 401 or attempt == 2:
                    raise
                self.credentials.login()
        raise AssertionError("unreachable")

    def _send(self, connection: Connection, method: str, path: str, body: Any, content_type: str) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        url = connection.server.rstrip("/") + path
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        for header, value in connection.as_http_headers().items():
            request.add_header(header, value)
        if data is not None:
            request.add_header("Content-Type", content_type)
        context = self._context(connection) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=context) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise api_error(method, path, exc.code, exc.read()) from None

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self._call("GET", self._path(kind, namespace, name))
        except NotFound:
            return None
        obj.setdefault("kind", kind)
        return obj

    def list(self, kind: str, namespace: str, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        path = self._path(kind, namespace)
        if labels:
            path += "?" + urllib.parse.urlencode({"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())})
        items = self._call("GET", path).get("items") or []
        for item in items:
            item.setdefault("kind", kind)
        return items

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._call("POST", self._path(obj["kind"], meta.get("namespace", "default")), dict(obj))

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any],
                     resource_version: str | None = None) -> None:
        # JSON patch "add" on /status replaces it whole (merge patch would keep dropped nested keys); a
        # resourceVersion in the patched object makes the write conditional: 409 when the object moved on
        ops: list[dict[str, Any]] = [{"op": "add", "path": "/status", "value": dict(status)}]
        if resource_version is not None:
            ops.insert(0, {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version})
        self._call("PATCH", self._path(kind, namespace, name, "status"), ops, "application/json-patch+json")

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self._call("DELETE", self._path(kind, namespace, name), {"propagationPolicy": "Background"})

    def server_version(self) -> tuple[int, int] | None:
        """From ``/version``; ``minor`` may read ``29+`` on managed clusters."""
        try:
            found = self._call("GET", "/version")
            major = int(re.sub(r"\D", "", str(found.get("major", ""))) or 0)
            minor = int(re.sub(r"\D", "", str(found.get("minor", ""))) or 0)
        except (ApiError, OSError, ValueError, AttributeError):
            return None
        return (major, minor) if major else None


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
