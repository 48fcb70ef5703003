"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902), the two patch types kopf and the operator send.

Why both: kopf writes finalizers and its annotations by merge patch and guards some writes with a JSON
patch whose first op is ``test`` of ``/metadata/resourceVersion``; a failed ``test`` must be a 422 as on a
kube-apiserver, because that is what kopf catches to retry on the next cycle.
"""

from __future__ import annotations

import copy
from typing import Any

from fedmist.testing.kubeapi.errors import ApiError, bad_request


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", "the server rejected our request due to an error in our request",
                    {"causes": [{"message": message}]})


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _unprocessable(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _unprocessable(f"path {path!r} does not exist") from None
    return node, parts[-1]


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent, last = _parent(doc, parts, path)
    try:
        return parent[int(last)] if isinstance(parent, list) else parent[last]
    except (KeyError, IndexError, ValueError, TypeError):
        raise _unprocessable(f"path {path!r} does not exist") from None


def _remove(doc: Any, path: str) -> Any:
    parent, last = _parent(doc, _pointer(path), path)
    try:
        return parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)
    except (KeyError, IndexError, ValueError, TypeError):
        raise _unprocessable(f"unable to remove nonexistent key {path!r}") from None


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last) if last.isdigit() else -1
        if not 0 <= index <= len(parent):
            raise _unprocessable(f"index out of range in {path!r}")
        parent.insert(index, copy.deepcopy(value))
    elif isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    else:
        raise _unprocessable(f"path {path!r} does not exist")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 on a copy of ``target``; a failed ``test`` or a missing path is a 422, a malformed patch a 400."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    for op in ops:
        kind, path = op.get("op"), op.get("path")
        if not isinstance(path, str):
            raise bad_request(f"json patch op {kind!r} has no path")
        if kind == "test":
            if _get(doc, path) != op.get("value"):
                raise _unprocessable(f"testing value {path} failed: test failed")
        elif kind == "add":
            doc = _add(doc, path, op.get("value"))
        elif kind == "replace":
            _get(doc, path)  # must exist
            if not path:
                doc = copy.deepcopy(op.get("value"))
            else:
                parent, last = _parent(doc, _pointer(path), path)
                parent[int(last) if isinstance(parent, list) else last] = copy.deepcopy(op.get("value"))
        elif kind == "remove":
            _remove(doc, path)
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise bad_request(f"json patch op {kind!r} has no from")
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, value)
        else:
            raise bad_request(f"Unexpected kind: {kind}")
    return doc
