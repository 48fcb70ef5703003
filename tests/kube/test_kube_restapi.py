"""``RestApi`` against a stand-in API server over real HTTP: paths, verbs, content types, error mapping."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fedmist.launch.kube.api import Conflict
from fedmist.launch.kube.restapi import RestApi


class FakeServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str, str, Any]] = []


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, self.path, self.headers.get("Content-Type", ""), body))
        code, reply = 200, {"items": [{"metadata": {"name": "p"}}]}
        if "/pods/missing" in self.path:
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
