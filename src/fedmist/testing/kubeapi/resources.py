"""The resource types the emulated API serves: the built-ins the operator, kopf and the kubelet touch, and
every CustomResourceDefinition created through the API (served from its ``spec.versions``).

Why a table and not Kubernetes' full list: discovery (``/api/v1``, ``/apis/<group>/<version>``) must list
what is really served, so kopf resolves exactly these resources and an unknown one is a 404 as on a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    schema: Mapping[str, Any] | None = field(default=None, compare=False)  # openAPIV3Schema (custom only)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def custom(self) -> bool:
        return self.schema is not None

    def discovery(self) -> list[dict[str, Any]]:
        """This resource's entries of an APIResourceList (the resource, then ``<plural>/<sub>``)."""
        main = {"name": self.plural, "singularName": self.kind.lower(), "namespaced": self.namespaced,
                "kind": self.kind, "verbs": list(VERBS)}
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        return [main, *({"name": f"{self.plural}/{sub}", "singularName": "", "namespaced": self.namespaced,
                         "kind": self.kind, "verbs": ["get", "patch", "update"]} for sub in self.subresources)]


BUILTIN: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, subresources=("status",), short_names=("ns",)),
    Resource("", "v1", "nodes", "Node", namespaced=False, subresources=("status",), short_names=("no",)),
    Resource("", "v1", "pods", "Pod", subresources=("status",), short_names=("po",)),
    Resource("", "v1", "services", "Service", subresources=("status",), short_names=("svc",)),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    Resource("", "v1", "events", "Event", short_names=("ev",)),
    Resource("events.k8s.io", "v1", "events", "Event", short_names=("ev",)),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False, subresources=("status",), short_names=("crd", "crds")),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
)


def from_crd(crd: Mapping[str, Any]) -> list[Resource]:
    """The served versions of a CRD, each with its schema and subresources."""
    spec = crd["spec"]
    names = spec["names"]
    result = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subs = tuple(sorted((version.get("subresources") or {}).keys()))
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {"type": "object",
                                                                          "x-kubernetes-preserve-unknown-fields": True}
        result.append(Resource(spec["group"], version["name"], names["plural"], names["kind"],
                               namespaced=spec.get("scope", "Namespaced") == "Namespaced", subresources=subs,
                               short_names=tuple(names.get("shortNames") or ()), schema=schema))
    return result


class Registry:
    """(group, version, plural) -> Resource; CRDs add and remove theirs."""

    def __init__(self) -> None:
        self._by_path: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in BUILTIN}

    def find(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        return next((r for r in self._by_path.values() if r.api_version == api_version and r.kind == kind), None)

    def add_crd(self, crd: Mapping[str, Any]) -> None:
        for resource in from_crd(crd):
            self._by_path[(resource.group, resource.version, resource.plural)] = resource

    def remove_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        for key in [k for k in self._by_path if k[0] == spec["group"] and k[2] == spec["names"]["plural"]]:
            del self._by_path[key]

    def groups(self) -> dict[str, list[str]]:
        """group -> versions served (the core group "" included)."""
        result: dict[str, list[str]] = {}
        for group, version, _ in self._by_path:
            if version not in result.setdefault(group, []):
                result[group].append(version)
        return result

    def in_version(self, group: str, version: str) -> list[Resource]:
        return [r for (g, v, _), r in sorted(self._by_path.items()) if g == group and v == version]
