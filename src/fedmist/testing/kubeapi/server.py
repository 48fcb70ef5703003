"""The emulated API over HTTP: a real aiohttp server on 127.0.0.1 speaking the Kubernetes REST API (discovery,
get/list/watch, create/update/patch/delete, subresources), authenticating bearer tokens and authorizing
them with RBAC; it runs its own event loop in a daemon thread, so a test drives it with plain calls.

Why HTTP and not an in-memory seam: the operator and kopf are started as real processes with a kubeconfig,
so everything they send (content types, query parameters, watch streams, error bodies) crosses a socket.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from fedmist.testing.kubeapi import rbac
from fedmist.testing.kubeapi.errors import ApiError, bad_request
from fedmist.testing.kubeapi.patching import json_patch, merge_patch
from fedmist.testing.kubeapi.resources import Resource
from fedmist.testing.kubeapi.store import Store
from fedmist.testing.kubeapi.watching import Route, serve_list, serve_watch

T = TypeVar("T")
MAX_BODY = 8 * 1024 * 1024
REQUEST_LOG = 100_000
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


class KubeApiServer:
    """Start with ``start()`` (or ``with``); ``url``, ``admin_token``; ``add_token`` binds more users."""

    def __init__(self, version: tuple[int, int] = (1, 30)) -> None:
        self.store = Store(version)
        self.version = version
        self.admin_token = secrets.token_urlsafe(24)
        self.tokens: dict[str, rbac.User] = {self.admin_token: rbac.User("admin", ("system:masters",))}
        self.url = ""
        # (user, method, path with query, status) of the latest requests: what clients sent, and what came of it
        self.requests: deque[tuple[str, str, str, int]] = deque(maxlen=REQUEST_LOG)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kubeapi", daemon=True)
        self._runner: web.AppRunner | None = None
        self.stopping = asyncio.Event()
        self.watch_queues: set[asyncio.Queue] = set()  # open watches, ended at shutdown

    # -- life cycle ---------------------------------------------------------------------------------------
    def start(self) -> KubeApiServer:
        self._thread.start()
        self.url = self.call_async(self._start)
        return self

    async def _start(self) -> str:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            self.call_async(self._shutdown)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        """End the watches (open streams would hold the runner's cleanup), then the server."""
        self.stopping.set()
        for queue in list(self.watch_queues):
            queue._queue.clear()  # type: ignore[attr-defined]
            queue.put_nowait(None)
        assert self._runner is not None
        await self._runner.cleanup()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (the store is single-threaded) and return its result."""
        async def run() -> T:
            return fn()
        return self.call_async(run)

    def call_async(self, fn: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(30)

    # -- users and files ----------------------------------------------------------------------------------
    def add_token(self, user: rbac.User, token: str | None = None) -> str:
        token = token or secrets.token_urlsafe(24)
        self.tokens[token] = user
        return token

    def write_kubeconfig(self, path: Path, token: str | None = None, namespace: str = "default") -> Path:
        """A kubeconfig with this server and ``token`` (the admin's by default), as ``KUBECONFIG`` expects."""
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "emulated",
                  "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
                  "users": [{"name": "emulated", "user": {"token": token or self.admin_token}}],
                  "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "emulated",
                                                                "namespace": namespace}}]}
        path.write_text(yaml.safe_dump(config))
        return path

    def apply_file(self, path: Path, namespace: str = "default") -> list[dict[str, Any]]:
        """Create every document of a YAML file as the admin (``kubectl create -f``)."""
        created = []
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict):
                created.append(self.call(lambda d=document: self._create_document(d, namespace)))
        return created

    def _create_document(self, document: dict[str, Any], namespace: str) -> dict[str, Any]:
        resource = self.store.registry.by_kind(document.get("apiVersion", ""), document.get("kind", ""))
        if resource is None:
            raise bad_request(f"no kind {document.get('kind')} in {document.get('apiVersion')}")
        ns = (document.get("metadata") or {}).get("namespace", namespace) if resource.namespaced else ""
        return self.store.create(resource, ns, document)

    # -- requests -----------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user = self.tokens.get(token) if scheme.lower() == "bearer" else None
        try:
            if user is None:
                raise rbac.unauthorized()
            response = await self._dispatch(request, user)
        except ApiError as exc:
            response = _json(exc.status(), exc.code)
        self.requests.append((user.name if user else "", request.method, request.path_qs, response.status))
        return response

    async def _dispatch(self, request: web.Request, user: rbac.User) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and (len(parts) <= 1 or parts == ["api", "v1"] or (
                parts[0] == "apis" and len(parts) <= 3)):
            return _json(self._discovery(parts))
        route = self._route(parts)
        verb = self._verb(request, route)
        resource_name = route.resource.plural + (f"/{route.sub}" if route.sub else "")
        if not rbac.allowed(self.store, user, verb, route.resource.group, resource_name, route.namespace,
                            route.name):
            raise rbac.forbidden(user, verb, route.resource.group, resource_name, route.namespace, route.name)
        if verb == "watch":
            return await serve_watch(self, request, route)
        if verb == "list":
            return _json(serve_list(self.store, request, route))
        if verb == "get":
            return _json(self.store.get(route.resource, route.namespace, route.name))
        body = await self._body(request)
        if verb == "create":
            return _json(self.store.create(route.resource, route.namespace, body), 201)
        if verb == "update":
            return _json(self.store.update(route.resource, route.namespace, route.name, body, route.sub))
        if verb == "patch":
            return _json(self._patch(route, request.content_type, body))
        if verb == "delete":
            options = body if isinstance(body, dict) else {}
            for key in ("gracePeriodSeconds", "propagationPolicy"):
                if key in request.query:
                    options[key] = int(request.query[key]) if key == "gracePeriodSeconds" else request.query[key]
            return _json(self.store.delete(route.resource, route.namespace, route.name, options))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise bad_request("the body of the request was in an unknown format") from None

    def _patch(self, route: Route, content_type: str, body: Any) -> dict[str, Any]:
        current = self.store.get(route.resource, route.namespace, route.name)
        if content_type == "application/json-patch+json":
            patched = json_patch(current, body)
        elif content_type == "application/merge-patch+json" or (
                content_type == "application/strategic-merge-patch+json" and not route.resource.custom):
            if not isinstance(body, dict):
                raise bad_request("the body of the request was in an unknown format")
            patched = merge_patch(current, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                           "media types include: application/json-patch+json, application/merge-patch+json")
        return self.store.update(route.resource, route.namespace, route.name, patched, route.sub)

    def _verb(self, request: web.Request, route: Route) -> str:
        if request.method == "GET":
            if route.name:
                return "get"
            return "watch" if request.query.get("watch") in ("true", "1") else "list"
        if request.method == "DELETE":
            if not route.name:
                raise ApiError(405, "MethodNotAllowed", "deletecollection is not served by this emulation")
            return "delete"
        verb = VERBS.get(request.method)
        if verb is None or (verb == "create") == bool(route.name):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        return verb

    def _route(self, parts: list[str]) -> Route:
        """``/api/v1/...`` or ``/apis/<group>/<version>/...`` -> (resource, namespace, name, subresource)."""
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            inner = self.store.registry.find(group, version, rest[2])
            if inner is not None and inner.namespaced:
                namespace, rest = rest[1], rest[2:]
        resource = self.store.registry.find(group, version, rest[0])
        if resource is None or len(rest) > 3 or (namespace and not resource.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in resource.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Route(resource, namespace, name, sub)

    def _discovery(self, parts: list[str]) -> dict[str, Any]:
        registry = self.store.registry
        if parts == ["version"]:
            major, minor = self.version
            return {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0-fedmist-emulated",
                    "platform": "linux/amd64"}
        if parts == ["healthz"] or parts == ["readyz"]:
            return {"status": "ok"}
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.url[7:]}]}
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [_group(g, vs) for g, vs in sorted(registry.groups().items()) if g]}
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in registry.groups():
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1], registry.groups()[parts[1]])}
        if parts == ["api", "v1"]:
            return _resource_list("", "v1", registry.in_version("", "v1"))
        if len(parts) == 3 and parts[0] == "apis" and registry.in_version(parts[1], parts[2]):
            return _resource_list(parts[1], parts[2], registry.in_version(parts[1], parts[2]))
        raise ApiError(404, "NotFound", "the server could not find the requested resource")


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def _resource_list(group: str, version: str, resources: list[Resource]) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": [entry for r in resources for entry in r.discovery()]}

