"""List and watch: selectors, ``resourceVersion`` semantics and the newline-delimited JSON event stream.

Why it matters: kopf lists, then watches from the list's ``resourceVersion``, and resumes from the last one
it saw after a disconnect; an event lost or repeated there is a handler never called or called twice. A
watch started from a version older than the kept history gets the ``410 Gone`` ERROR event that makes
kopf relist, and an object that stops (starts) matching a selector is sent as DELETED (ADDED).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fedmist.testing.kubeapi.errors import ApiError, bad_request
from fedmist.testing.kubeapi.resources import Resource
from fedmist.testing.kubeapi.selectors import Matcher, field_selector, label_selector
from fedmist.testing.kubeapi.store import Event, Store

if TYPE_CHECKING:
    from fedmist.testing.kubeapi.server import KubeApiServer

QUEUE_MAX = 10_000  # events buffered per watch; a watcher that falls this far behind is sent 410 and closed
IDLE_CHECK_S = 2.0  # how often an idle watch checks that its client is still there


@dataclass(frozen=True)
class Route:
    resource: Resource
    namespace: str  # "" for cluster-scoped resources and cluster-wide requests
    name: str
    sub: str


def _matcher(query: Mapping[str, str], route: Route) -> Matcher:
    labels = label_selector(query.get("labelSelector", ""))
    fields = field_selector(query.get("fieldSelector", ""), route.resource.kind)

    def match(obj: Mapping[str, Any]) -> bool:
        ns = (obj.get("metadata") or {}).get("namespace", "")
        return (not route.namespace or ns == route.namespace) and labels(obj) and fields(obj)
    return match


def _as_item(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """List items of built-in kinds carry no apiVersion/kind in JSON, as a kube-apiserver sends them."""
    if not resource.custom:
        obj = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    return obj


def serve_list(store: Store, request: web.Request, route: Route) -> dict[str, Any]:
    """A list, in chunks of ``limit`` with a ``continue`` token (kopf lists that way); a chunk after the first
    is cut from the objects as they are then, not from a snapshot of the first (a kube-apiserver keeps one)."""
    match = _matcher(request.query, route)
    items = [_as_item(route.resource, obj) for obj in store.list(route.resource, route.namespace or None)
             if match(obj)]
    meta: dict[str, Any] = {"resourceVersion": str(store.rv)}
    start = 0
    if request.query.get("continue"):
        try:
            token = json.loads(base64.urlsafe_b64decode(request.query["continue"]))
            start, meta["resourceVersion"] = int(token["start"]), str(token["rv"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, "BadRequest", "continue key is not valid") from None
    limit = request.query.get("limit", "")
    if limit.isdigit() and int(limit) > 0:
        end = start + int(limit)
        if end < len(items):
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"rv": meta["resourceVersion"], "start": end}).encode()).decode()
            meta["remainingItemCount"] = len(items) - end
        items = items[start:end]
    else:
        items = items[start:]
    return {"kind": f"{route.resource.kind}List", "apiVersion": route.resource.api_version, "metadata": meta,
            "items": items}


def _gone(since: str, oldest: int) -> dict[str, Any]:
    return {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                        "message": f"too old resource version: {since} ({oldest})",
                                        "reason": "Expired", "code": 410}}


def _translate(event: Event, route: Route, match: Matcher) -> dict[str, Any] | None:
    """The event as this watcher sees it (None: not its business)."""
    _, kind, resource, obj, previous = event
    if (resource.group, resource.plural) != (route.resource.group, route.resource.plural):
        return None
    now_in = match(obj)
    was_in = match(previous) if previous is not None else now_in
    if kind == "MODIFIED" and now_in != was_in:
        kind = "ADDED" if now_in else "DELETED"
    elif not now_in:
        return None
    return {"type": kind, "object": obj}


async def serve_watch(server: KubeApiServer, request: web.Request, route: Route) -> web.StreamResponse:
    store = server.store
    match = _matcher(request.query, route)
    since = request.query.get("resourceVersion", "")
    if since and not since.isdigit():
        raise bad_request(f'invalid resource version "{since}"')
    try:
        timeout = float(request.query.get("timeoutSeconds", "0") or 0)
    except ValueError:
        raise bad_request("invalid timeoutSeconds") from None
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_MAX)
    backlog: list[dict[str, Any]] = []
    if not since or since == "0":  # "from now", with the current objects as synthetic ADDED events
        backlog = [{"type": "ADDED", "object": obj}
                   for obj in store.list(route.resource, route.namespace or None) if match(obj)]
    else:
        oldest = store.history[0][0] if store.history else store.rv + 1
        if int(since) < oldest - 1 and int(since) < store.rv:
            backlog = [_gone(since, oldest)]
        else:
            backlog = [e for e in (_translate(ev, route, match) for ev in store.history if ev[0] > int(since)) if e]

    def subscriber(event: Event) -> None:
        translated = _translate(event, route, match)
        if translated is not None:
            try:
                queue.put_nowait(translated)
            except asyncio.QueueFull:
                store.subscribers.remove(subscriber)
                queue._queue.clear()  # type: ignore[attr-defined]  # make room for the end marker
                queue.put_nowait(_gone(since, store.rv))

    if not any(e["type"] == "ERROR" for e in backlog):
        store.subscribers.append(subscriber)
    server.watch_queues.add(queue)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout > 0 else None
    try:
        for event in backlog:
            await response.write(json.dumps(event).encode() + b"\n")
        if any(e["type"] == "ERROR" for e in backlog):
            return response
        while not server.stopping.is_set():
            wait = IDLE_CHECK_S if deadline is None else min(IDLE_CHECK_S, deadline - loop.time())
            if wait <= 0:
                break
            try:
                event = await asyncio.wait_for(queue.get(), wait)
            except asyncio.TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break
                continue
            if event is None:  # the server stops
                break
            await response.write(json.dumps(event).encode() + b"\n")
            if event["type"] == "ERROR":
                break
    except (ConnectionError, ApiError):
        pass
    finally:
        server.watch_queues.discard(queue)
        if subscriber in store.subscribers:
            store.subscribers.remove(subscriber)
    return response
