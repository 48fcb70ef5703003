"""``RestApi`` against a stand-in API server over real HTTP: paths, verbs, content types, error mapping with
the server's reason, conditional status writes, and the login it shares with kopf (KUBECONFIG, 401)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedmist.launch.kube.api import ApiError, Conflict
from fedmist.launch.kube.login import Credentials
from fedmist.launch.kube.restapi import RestApi

FORBIDDEN = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
             "message": 'pods is forbidden: User "system:serviceaccount:fedmist-system:fedmist-operator" cannot '
                        'create resource "pods" in API group "" in the namespace "ns"'}


class FakeServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str, str, Any]] = []
        self.tokens: list[str] = []
        self.valid_token: str | None = None


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, self.path, self.headers.get("Content-Type", ""), body))
        self.server.tokens.append(self.headers.get("Authorization", ""))
        code, reply = 200, {"items": [{"metadata": {"name": "p"}}]}
        if self.server.valid_token and self.headers.get("Authorization") != f"Bearer {self.server.valid_token}":
            code, reply = 401, {"kind": "Status", "reason": "Unauthorized", "message": "Unauthorized"}
        elif self.path == "/version":
            reply = {"major": "1", "minor": "29+", "gitVersion": "v1.29.3-eks"}
        elif "/pods/forbidden" in self.path:
            code, reply = 403, FORBIDDEN
        elif "/pods/missing" in self.path:
            code, reply = 404, {"reason": "NotFound"}
        elif self.command == "POST" and "/services" in self.path:
            code, reply = 409, {"reason": "AlreadyExists"}
        data = json.dumps(reply).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


def test_rest_api_speaks_the_kubernetes_rest_paths() -> None:
    server = FakeServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = RestApi(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        assert api.get("Pod", "ns", "missing") is None
        pods = api.list("Pod", "ns", {"federatedlearningjob.sedna.io/name": "j"})
        assert pods == [{"metadata": {"name": "p"}, "kind": "Pod"}]
        api.create({"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}})
        with pytest.raises(Conflict):
            api.create({"kind": "Service", "metadata": {"name": "s", "namespace": "ns"}})
        api.patch_status("FederatedLearningJob", "ns", "j", {"phase": "Running"})
        api.delete("Pod", "ns", "p")
    finally:
        server.shutdown()
        server.server_close()
    assert [(m, p) for m, p, _, _ in server.requests] == [
        ("GET", "/api/v1/namespaces/ns/pods/missing"),
        ("GET", "/api/v1/namespaces/ns/pods?labelSelector=federatedlearningjob.sedna.io%2Fname%3Dj"),
        ("POST", "/api/v1/namespaces/ns/pods"),
        ("POST", "/api/v1/namespaces/ns/services"),
        ("PATCH", "/apis/sedna.io/v1alpha1/namespaces/ns/federatedlearningjobs/j/status"),
        ("DELETE", "/api/v1/namespaces/ns/pods/p"),
    ]
    patch = server.requests[4]
    assert patch[2] == "application/json-patch+json"
    assert patch[3] == [{"op": "add", "path": "/status", "value": {"phase": "Running"}}]


def serve() -> FakeServer:
    server = FakeServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: FakeServer) -> None:
    server.shutdown()
    server.server_close()


def test_api_errors_carry_the_servers_reason() -> None:
    server = serve()
    try:
        with pytest.raises(ApiError) as refused:
            RestApi(f"http://127.0.0.1:{server.server_address[1]}").get("Pod", "ns", "forbidden")
    finally:
        stop(server)
    assert refused.value.code == 403 and refused.value.reason == "Forbidden"
    assert str(refused.value) == f"GET /api/v1/namespaces/ns/pods/forbidden: 403 Forbidden: {FORBIDDEN['message']}"


def test_status_write_carries_the_resource_version_and_server_version_is_read() -> None:
    server = serve()
    api = RestApi(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        api.patch_status("FederatedLearningJob", "ns", "j", {"phase": "Running"}, resource_version="42")
        assert api.server_version() == (1, 29)
    finally:
        stop(server)
    assert server.requests[0][3] == [{"op": "replace", "path": "/metadata/resourceVersion", "value": "42"},
                                     {"op": "add", "path": "/status", "value": {"phase": "Running"}}]


def kubeconfig(path: Path, port: int, token: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}]}))
    return path


def test_kubeconfig_login_is_shared_by_kopf_and_the_rest_client(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import kopf

    from fedmist.launch.kube.api import MemoryApi
    from fedmist.launch.kube.controller import Controller
    from fedmist.launch.kube.operator import build_registry

    server = serve()
    server.valid_token = "tok-1"
    port = server.server_address[1]
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", port, "tok-1")))
    credentials = Credentials()
    registry = build_registry(Controller(MemoryApi()), 5.0, credentials)
    logins = [h for h in registry._activities.get_all_handlers() if h.activity.value == "authentication"]
    assert len(logins) == 1
    info = logins[0].fn(settings=kopf.OperatorSettings(), logger=None)
    assert info.server == f"http://127.0.0.1:{port}" and info.token == "tok-1"
    api = RestApi(credentials)
    try:
        api.list("Pod", "ns")
        assert credentials.current() is info  # the REST client uses what kopf was given
        kubeconfig(tmp_path / "config", port, "tok-2")  # the token rotates: 401, log in again, retry once
        server.valid_token = "tok-2"
        api.list("Pod", "ns")
    finally:
        stop(server)
    assert server.tokens == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
