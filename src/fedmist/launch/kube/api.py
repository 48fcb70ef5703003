"""The small API seam the operator uses (get, list, create, patch status, delete, watch), and an in-memory
implementation of it.

Why a seam this narrow: the reconcile logic is tested against ``MemoryApi`` exactly as it runs against a
cluster (``restapi.RestApi``); anything wider would be untested surface. ``MemoryApi`` also plays the
garbage collector (owner-reference cascade) and records watch events, so deletion and recreation are
exercised offline.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class ApiError(Exception):
    """A refusal of the API server; the text carries the server's own reason (its ``Status`` message), so a
    log line says *why* (``pods is forbidden: User ... cannot create ...``), not only ``403``."""

    def __init__(self, message: str, code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.code, self.reason = code, reason


class NotFound(ApiError):
    """The object does not exist (HTTP 404)."""


class Conflict(ApiError):
    """An object of that name already exists, or a conditional write met a newer ``resourceVersion`` (409)."""


class KubeApi(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list(self, kind: str, namespace: str, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]: ...

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any],
                     resource_version: str | None = None) -> None:
        """Replace the object's whole ``status`` (a merge patch would keep keys the new status dropped); with
        ``resource_version``, only if the object is still at that version (else ``Conflict``)."""

    def delete(self, kind: str, namespace: str, name: str) -> None: ...

    def server_version(self) -> tuple[int, int] | None:
        """(major, minor) of the API server, None when it cannot be told."""


Event = tuple[str, dict[str, Any]]  # ("ADDED" | "MODIFIED" | "DELETED", object)


@dataclass
class MemoryApi:
    """Objects keyed by (kind, namespace, name). ``watchers`` get every event; ``create`` assigns a uid; every
    write bumps ``resourceVersion`` (one counter, as etcd's revision)."""

    version: tuple[int, int] = (1, 30)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    watchers: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    _uids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _revisions: itertools.count = field(default_factory=lambda: itertools.count(1))

    def server_version(self) -> tuple[int, int] | None:
        return self.version

    def _bump(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._revisions))

    def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((kind, copy.deepcopy(obj)))
        for watcher in list(self.watchers):
            watcher(kind, copy.deepcopy(obj))

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
        meta = obj["metadata"]
        return obj["kind"], meta.get("namespace", "default"), meta["name"]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, kind: str, namespace: str, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        wanted = dict(labels or {})
        return [copy.deepcopy(obj) for (k, ns, _), obj in sorted(self.objects.items())
                if k == kind and ns == namespace
                and all(obj["metadata"].get("labels", {}).get(key) == value for key, value in wanted.items())]

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(obj))
        key = self._key(stored)
        if key in self.objects:
            raise Conflict(f"{key[0]} {key[2]} already exists")
        stored["metadata"].setdefault("uid", f"uid-{next(self._uids)}")
        if stored["kind"] == "Pod":
            stored.setdefault("status", {"phase": "Pending"})
        self._bump(stored)
        self.objects[key] = stored
        self._emit("ADDED", stored)
        return copy.deepcopy(stored)

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any],
                     resource_version: str | None = None) -> None:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise NotFound(f"{kind} {namespace}/{name}", 404, "NotFound")
        if resource_version is not None and resource_version != obj["metadata"].get("resourceVersion"):
            raise Conflict(f"{kind} {namespace}/{name}: the object has been modified", 409, "Conflict")
        obj["status"] = copy.deepcopy(dict(status))
        self._bump(obj)
        self._emit("MODIFIED", obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete, then cascade to objects owned by it (what Kubernetes' garbage collector does)."""
        obj = self.objects.pop((kind, namespace, name), None)
        if obj is None:
            raise NotFound(f"{kind} {namespace}/{name}")
        self._emit("DELETED", obj)
        uid = obj["metadata"].get("uid")
        for key, other in list(self.objects.items()):
            owners = other["metadata"].get("ownerReferences", [])
            if key in self.objects and any(ref.get("uid") == uid for ref in owners):
                self.delete(*key)

    # -- test helpers: what the kubelet would do ----------------------------------------------------------
    def set_pod_phase(self, namespace: str, name: str, phase: str, exit_code: int | None = None) -> None:
        """Move a pod to ``phase``; with ``exit_code`` its worker container is reported terminated."""
        pod = self.objects[("Pod", namespace, name)]
        status: dict[str, Any] = {"phase": phase}
        if exit_code is not None:
            container = pod["spec"]["containers"][0]["name"]
            status["containerStatuses"] = [{"name": container, "state": {"terminated": {"exitCode": exit_code}}}]
        pod["status"] = status
        self._bump(pod)
        self._emit("MODIFIED", pod)
