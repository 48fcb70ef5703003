"""Bearer tokens and RBAC, evaluated like the kube-apiserver's RBAC authorizer over the ClusterRoles, Roles and
their bindings stored in the API (so ``deploy/rbac.yaml`` applied through the API is what is enforced).

Why: the operator runs as the ServiceAccount of ``deploy/rbac.yaml``; a verb its ClusterRole lacks must fail
here as on a cluster, with the same 403 ``Status`` body, so a missing grant is caught by the suite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedmist.testing.kubeapi.errors import ApiError
from fedmist.testing.kubeapi.store import Store

ADMIN_GROUP = "system:masters"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ("system:authenticated",)

    @classmethod
    def service_account(cls, namespace: str, name: str) -> User:
        return cls(f"system:serviceaccount:{namespace}:{name}",
                   ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def _subject_matches(subject: Mapping[str, Any], user: User) -> bool:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        return user.name == f"system:serviceaccount:{subject.get('namespace')}:{subject.get('name')}"
    if kind == "User":
        return user.name == subject.get("name")
    return kind == "Group" and subject.get("name") in user.groups


def _rule_allows(rule: Mapping[str, Any], verb: str, group: str, resource: str, name: str) -> bool:
    def has(field: str, value: str) -> bool:
        values = rule.get(field) or []
        return "*" in values or value in values

    names = rule.get("resourceNames") or []
    return (has("verbs", verb) and has("apiGroups", group) and has("resources", resource)
            and (not names or name in names))


def _rules(store: Store, binding: Mapping[str, Any], namespace: str) -> list[Mapping[str, Any]]:
    ref = binding.get("roleRef") or {}
    plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
    role = store.objects.get(("rbac.authorization.k8s.io", plural, "" if plural == "clusterroles" else namespace,
                              ref.get("name", "")))
    return list((role or {}).get("rules") or [])


def allowed(store: Store, user: User, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
    """Whether a binding of the user's grants ``verb`` on ``group``/``resource`` (``pods/status``) there."""
    if ADMIN_GROUP in user.groups:
        return True
    for (g, plural, ns, _), binding in store.objects.items():
        if g != "rbac.authorization.k8s.io" or plural not in ("clusterrolebindings", "rolebindings"):
            continue
        if plural == "rolebindings" and ns != namespace:
            continue
        if not any(_subject_matches(s, user) for s in binding.get("subjects") or []):
            continue
        if any(_rule_allows(rule, verb, group, resource, name) for rule in _rules(store, binding, ns)):
            return True
    return False


def forbidden(user: User, verb: str, group: str, resource: str, namespace: str, name: str) -> ApiError:
    plural, _, sub = resource.partition("/")
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    what = f'{resource}.{group}' if group else resource
    subject = f'"{name}" ' if name else ""
    message = (f'{what} {subject}is forbidden: User "{user.name}" cannot {verb} resource "{plural}"'
               + (f' subresource "{sub}"' if sub else "") + f' in API group "{group}"{where}')
    details: dict[str, Any] = {"kind": plural, **({"name": name} if name else {}), **({"group": group} if group else {})}
    return ApiError(403, "Forbidden", message, details)
