"""Label and field selectors as the API parses them (``a=b,c!=d,e in (x,y),!f``; fields ``spec.nodeName=n``).

Why parsed strictly: a selector the API would reject (400) must not silently match everything here, or an
operator that builds a wrong selector passes its tests and lists every pod of the cluster in production.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from fedmist.testing.kubeapi.errors import bad_request

Matcher = Callable[[Mapping[str, Any]], bool]
_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQ = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>[-A-Za-z0-9_.]*)\s*$")
_EXISTS = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")
# the fields a kube-apiserver accepts in a field selector, per kind (every kind takes name and namespace)
FIELDS: Mapping[str, frozenset[str]] = {
    "Pod": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                      "status.phase", "status.podIP", "status.nominatedNodeName"}),
    "Secret": frozenset({"type"}),
    "Event": frozenset({"involvedObject.kind", "involvedObject.name", "involvedObject.namespace",
                        "involvedObject.uid", "reason", "type", "source"}),
}


def _split_terms(text: str) -> list[str]:
    """Commas split terms except inside ``(...)``."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def label_selector(text: str) -> Matcher:
    """A matcher over an object's ``metadata.labels``; 400 for a selector the API would not parse."""
    checks: list[Matcher] = []
    for term in _split_terms(text or ""):
        if m := _SET.match(term):
            key, values = m["key"], {v.strip() for v in m["values"].split(",") if v.strip()}
            inside = m["op"] == "in"
            checks.append(lambda labels, k=key, vs=values, i=inside: (labels.get(k) in vs) == i)
        elif m := _EQ.match(term):
            key, value, equal = m["key"], m["value"], m["op"] != "!="
            checks.append(lambda labels, k=key, v=value, e=equal: (labels.get(k) == v) == e)
        elif m := _EXISTS.match(term):
            key, present = m["key"], not m["neg"]
            checks.append(lambda labels, k=key, p=present: (k in labels) == p)
        else:
            raise bad_request(f"unable to parse requirement: {term.strip()!r}")
    return lambda obj: all(check((obj.get("metadata") or {}).get("labels") or {}) for check in checks)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return "" if node is None else str(node)


def field_selector(text: str, kind: str) -> Matcher:
    """A matcher over the fields the API allows for ``kind`` (``=``, ``==``, ``!=``); 400 for any other."""
    allowed = {"metadata.name", "metadata.namespace"} | FIELDS.get(kind, frozenset())
    checks: list[Matcher] = []
    for term in _split_terms(text or ""):
        m = _EQ.match(term)
        if not m:
            raise bad_request(f"invalid selector: '{term.strip()}'; can't understand '{term.strip()}'")
        if m["key"] not in allowed:
            raise bad_request(f'"{m["key"]}" is not a known field selector: only "{", ".join(sorted(allowed))}"')
        path, value, equal = m["key"], m["value"], m["op"] != "!="
        checks.append(lambda obj, p=path, v=value, e=equal: (_field_value(obj, p) == v) == e)
    return lambda obj: all(check(obj) for check in checks)
