"""The emulated API's objects and their life cycle: what a kube-apiserver with etcd, the garbage collector
and the namespace controller do to an object between two requests.

Faithful where the operator and kopf depend on it: ``uid``, ``creationTimestamp``, a cluster-wide
``resourceVersion`` bumped on every real change (none on a no-op write) with 409 for a stale one,
``generation`` bumped on a change outside ``metadata``/``status``, the status subresource (the main endpoint
ignores ``status``, ``/status`` ignores the rest), schema pruning and 422, finalizers and
``deletionTimestamp``, graceful deletion of pods bound to a node (their kubelet finishes it), and owner
references with a background-cascading garbage collector. Runs on one event loop thread: no locks.
"""

from __future__ import annotations

import base64
import copy
import itertools
import re
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from fedmist.testing.kubeapi import errors
from fedmist.testing.kubeapi.resources import Registry, Resource
from fedmist.testing.kubeapi.schema import check

Key = tuple[str, str, str, str]  # (group, plural, namespace or "", name)
Event = tuple[int, str, Resource, dict[str, Any], dict[str, Any] | None]  # (rv, type, resource, object, previous)
HISTORY = 5000  # events kept for watches that resume from a resourceVersion; older ones get 410 Gone
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public")


def now(delta_s: float = 0.0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=delta_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


SIDECARS_SINCE = (1, 29)  # native sidecars (an init container's restartPolicy) are served from this version on


class Store:
    def __init__(self, version: tuple[int, int] = (1, 30)) -> None:
        self.version = version
        self.registry = Registry()
        self.objects: dict[Key, dict[str, Any]] = {}
        self.history: deque[Event] = deque(maxlen=HISTORY)
        self.subscribers: list[Callable[[Event], None]] = []
        self._rv = itertools.count(1)
        self.rv = 0
        for name in DEFAULT_NAMESPACES:
            self.create(self.registry.find("", "v1", "namespaces"), "", {"metadata": {"name": name}})

    # -- reading ----------------------------------------------------------------------------------------
    @staticmethod
    def key(resource: Resource, namespace: str, name: str) -> Key:
        return resource.group, resource.plural, namespace if resource.namespaced else "", name

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        found = self.objects.get(self.key(resource, namespace, name))
        if found is None:
            raise errors.not_found(resource.plural, resource.group, name)
        return copy.deepcopy(found)

    def list(self, resource: Resource, namespace: str | None) -> list[dict[str, Any]]:
        """Objects of ``resource``, of one namespace or (None) all, by namespace and name."""
        return [copy.deepcopy(obj) for (g, p, ns, _), obj in sorted(self.objects.items())
                if g == resource.group and p == resource.plural and (namespace is None or ns == namespace)]

    # -- writing ----------------------------------------------------------------------------------------
    def _next_rv(self) -> str:
        self.rv = next(self._rv)
        return str(self.rv)

    def _emit(self, kind: str, resource: Resource, obj: dict[str, Any], previous: dict[str, Any] | None) -> None:
        event: Event = (self.rv, kind, resource, copy.deepcopy(obj), previous)
        self.history.append(event)
        for subscriber in list(self.subscribers):
            subscriber(event)

    def _validate(self, resource: Resource, obj: dict[str, Any], name: str) -> dict[str, Any]:
        if resource.schema is None:
            return obj
        pruned, causes = check(resource.schema, obj)
        if causes:
            raise errors.invalid(resource.kind, resource.group, name, causes)
        return pruned

    def create(self, resource: Resource | None, namespace: str, body: Any) -> dict[str, Any]:
        if resource is None or not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request("the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if obj.get("kind", resource.kind) != resource.kind or obj.get("apiVersion", resource.api_version) \
                != resource.api_version:
            raise errors.bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                                     f"expected API version ({resource.api_version})")
        obj.update(apiVersion=resource.api_version, kind=resource.kind)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name") or ""
        if resource.namespaced:
            if meta.get("namespace", namespace) != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                         "on the request")
            meta["namespace"] = namespace
            ns = self.objects.get(("", "namespaces", "", namespace))
            if ns is None:
                raise errors.not_found("namespaces", "", namespace)
            if ns["metadata"].get("deletionTimestamp"):
                raise errors.ApiError(403, "Forbidden", f'{resource.plural} "{name}" is forbidden: unable to create '
                                      f"new content in namespace {namespace} because it is being terminated")
        else:
            meta.pop("namespace", None)
        if not name or len(name) > 253 or not _SUBDOMAIN.match(name):
            raise errors.invalid(resource.kind, resource.group, name, [(
                "metadata.name", "FieldValueRequired" if not name else "FieldValueInvalid",
                "Required value: name or generateName is required" if not name else
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
                "characters, '-' or '.', and must start and end with an alphanumeric character")])
        key = self.key(resource, namespace, name)
        if key in self.objects:
            raise errors.already_exists(resource.plural, resource.group, name)
        if "status" in resource.subresources and resource.custom:
            obj.pop("status", None)  # a CR's status is written through /status only
        if resource.kind == "Pod":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            if self.version < SIDECARS_SINCE:  # an older API drops the field it does not know, silently
                for container in (obj.get("spec") or {}).get("initContainers") or []:
                    container.pop("restartPolicy", None)
        elif resource.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        self._fold_string_data(obj)
        obj = self._validate(resource, obj, name)
        meta = obj["metadata"]
        for server_set in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "uid"):
            meta.pop(server_set, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), resourceVersion=self._next_rv())
        if resource.custom:
            meta["generation"] = 1
        if resource.kind == "CustomResourceDefinition":
            obj["status"] = {"conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                                             "lastTransitionTime": now()}], "acceptedNames": obj["spec"]["names"]}
            self.registry.add_crd(obj)
        self.objects[key] = obj
        self._emit("ADDED", resource, obj, None)
        if meta.get("ownerReferences"):
            self.collect_garbage()
        return copy.deepcopy(obj)

    @staticmethod
    def _fold_string_data(obj: dict[str, Any]) -> None:
        """A Secret's ``stringData`` is write-only: the API stores it base64-encoded in ``data``."""
        if obj.get("kind") == "Secret" and isinstance(obj.get("stringData"), dict):
            data = obj.setdefault("data", {})
            for key, value in obj.pop("stringData").items():
                data[key] = base64.b64encode(str(value).encode()).decode()

    def update(self, resource: Resource, namespace: str, name: str, body: Any, sub: str = "",
               check_rv: bool = True) -> dict[str, Any]:
        """PUT (and the result of a PATCH): a ``metadata.resourceVersion`` in ``body`` must be the stored one."""
        key = self.key(resource, namespace, name)
        old = self.objects.get(key)
        if old is None:
            raise errors.not_found(resource.plural, resource.group, name)
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request("the body of the request was in an unknown format")
        if (body.get("metadata") or {}).get("name", name) != name:
            raise errors.bad_request(f'the name of the object ({body["metadata"]["name"]}) does not match the name '
                                     f"on the URL ({name})")
        wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
        if check_rv and wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.plural, resource.group, name)
        if sub == "status":
            new = {**copy.deepcopy(old), "status": copy.deepcopy(body.get("status"))}
            if new["status"] is None:
                new.pop("status")
        else:
            new = copy.deepcopy(body)
            new.update(apiVersion=resource.api_version, kind=resource.kind)
            if "status" in resource.subresources:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            meta = new.setdefault("metadata", {})
            for fixed in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation"):
                meta.pop(fixed, None)
                if fixed in old["metadata"]:
                    meta[fixed] = old["metadata"][fixed]
            self._fold_string_data(new)
            self._check_update(resource, old, new, name)
        new = self._validate(resource, new, name)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return copy.deepcopy(old)  # a no-op write changes nothing, not even the resourceVersion
        if resource.custom and _spec_part(new) != _spec_part(old):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[key] = new
        self._emit("MODIFIED", resource, new, copy.deepcopy(old))
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(resource, key)
        return copy.deepcopy(new)

    @staticmethod
    def _check_update(resource: Resource, old: dict[str, Any], new: dict[str, Any], name: str) -> None:
        if old["metadata"].get("deletionTimestamp"):
            added = set(new["metadata"].get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
            if added:
                raise errors.invalid(resource.kind, resource.group, name, [(
                    "metadata.finalizers", "FieldValueForbidden",
                    "Forbidden: no new finalizers can be added if the object is being deleted")])
        if resource.kind == "Pod" and new.get("spec") != old.get("spec"):
            raise errors.invalid(resource.kind, resource.group, name, [(
                "spec", "FieldValueForbidden", "Forbidden: pod updates may not change fields other than "
                "`spec.containers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations`")])

    def delete(self, resource: Resource, namespace: str, name: str, options: dict[str, Any] | None = None
               ) -> dict[str, Any]:
        """DELETE: finalizers and node-bound pods make it a mark (``deletionTimestamp``); else it is gone and its
        dependents are collected (``propagationPolicy`` Background, the default, or Orphan)."""
        options = options or {}
        key = self.key(resource, namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            raise errors.not_found(resource.plural, resource.group, name)
        pre = options.get("preconditions") or {}
        if (pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]) or (
                pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]):
            raise errors.conflict(resource.plural, resource.group, name)
        if options.get("propagationPolicy") == "Orphan":
            self._orphan(obj["metadata"]["uid"])
        meta = obj["metadata"]
        grace = options.get("gracePeriodSeconds")
        if resource.kind == "Pod" and (obj.get("spec") or {}).get("nodeName") and grace != 0:
            grace = grace if grace is not None else (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            if not meta.get("deletionTimestamp"):
                return self._mark(resource, key, grace)
            return copy.deepcopy(obj)
        if meta.get("finalizers"):
            return self._mark(resource, key, 0) if not meta.get("deletionTimestamp") else copy.deepcopy(obj)
        if resource.kind == "Namespace":
            self._empty_namespace(name)
        return self._remove(resource, key)

    def _mark(self, resource: Resource, key: Key, grace: int) -> dict[str, Any]:
        obj = self.objects[key]
        old = copy.deepcopy(obj)
        obj["metadata"].update(deletionTimestamp=now(grace), deletionGracePeriodSeconds=grace,
                               resourceVersion=self._next_rv())
        self._emit("MODIFIED", resource, obj, old)
        return copy.deepcopy(obj)

    def _remove(self, resource: Resource, key: Key) -> dict[str, Any]:
        obj = self.objects.pop(key)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._emit("DELETED", resource, obj, None)
        if resource.kind == "CustomResourceDefinition":
            self.registry.remove_crd(obj)
        self.collect_garbage()
        return copy.deepcopy(obj)

    def _empty_namespace(self, namespace: str) -> None:
        for key in [k for k in self.objects if k[2] == namespace]:
            if key in self.objects:
                resource = self._resource_of(self.objects[key])
                self.delete(resource, namespace, key[3], {"gracePeriodSeconds": 0})

    def _resource_of(self, obj: dict[str, Any]) -> Resource:
        found = self.registry.by_kind(obj["apiVersion"], obj["kind"])
        assert found is not None, obj["kind"]
        return found

    def _orphan(self, uid: str) -> None:
        for key, obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == uid for ref in refs):
                body = copy.deepcopy(obj)
                body["metadata"]["ownerReferences"] = [ref for ref in refs if ref.get("uid") != uid]
                self.update(self._resource_of(obj), key[2], key[3], body, check_rv=False)

    def collect_garbage(self) -> None:
        """Kubernetes' garbage collector, at once: an object whose owners are all gone is deleted (in the
        background, so its own dependents follow); a reference to a gone owner among live ones is dropped."""
        live = {obj["metadata"]["uid"]: key for key, obj in self.objects.items()}
        for key, obj in list(self.objects.items()):
            if key not in self.objects or obj["metadata"].get("deletionTimestamp"):
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            alive = [ref for ref in refs if ref.get("uid") in live and live[ref["uid"]][2] in ("", key[2])]
            if refs and not alive:
                self.delete(self._resource_of(obj), key[2], key[3], {"propagationPolicy": "Background"})
            elif len(alive) != len(refs):
                body = copy.deepcopy(obj)
                body["metadata"]["ownerReferences"] = alive
                self.update(self._resource_of(obj), key[2], key[3], body, check_rv=False)


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
