"""A CRD's ``openAPIV3Schema`` applied as a kube-apiserver applies a structural schema: unknown fields are
pruned (unless ``x-kubernetes-preserve-unknown-fields``), and type, required, enum, length and range errors
refuse the write with 422 naming each field.

Why the operator depends on it: the status it writes is pruned and checked by this schema on a cluster, so a
status key the CRD does not declare silently vanishes there; the emulation must make it vanish too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Cause = tuple[str, str, str]  # (field, reason, message)
_TYPES: Mapping[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,),
                                          "integer": (int,), "number": (int, float), "boolean": (bool,)}


def _type_ok(kind: str, value: Any) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(kind, (object,)))


def check(schema: Mapping[str, Any], value: Any, path: str = "", root: bool = True) -> tuple[Any, list[Cause]]:
    """(``value`` pruned, causes). ``root``: the object itself, whose ``metadata`` the API validates apart."""
    causes: list[Cause] = []
    here = path or "<root>"
    if value is None:
        if schema.get("nullable"):
            return None, []
        return None, [(here, "FieldValueRequired", "Required value")] if schema.get("type") else []
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            causes.append((here, "FieldValueTypeInvalid", f'Invalid value: "{value}": must be int or string'))
        return value, causes
    if kind and not _type_ok(kind, value):
        got = {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "number")
        return value, [(here, "FieldValueTypeInvalid", f'Invalid value: "{got}": {here} in body must be of type '
                                                      f"{kind}: \"{got}\"")]
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(f'"{v}"' for v in schema["enum"])
        causes.append((here, "FieldValueNotSupported", f'Unsupported value: "{value}": supported values: {supported}'))
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            causes.append((here, "FieldValueInvalid", f'Invalid value: "{value}": {here} in body should be at least '
                                                      f"{schema['minLength']} chars long"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append((here, "FieldValueTooLong", f"Too long: may not be longer than {schema['maxLength']}"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            causes.append((here, "FieldValueInvalid", f'Invalid value: "{value}": {here} in body should match '
                                                      f"'{schema['pattern']}'"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            causes.append((here, "FieldValueInvalid", f"Invalid value: {value}: {here} in body should be greater "
                                                      f"than or equal to {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            causes.append((here, "FieldValueInvalid", f"Invalid value: {value}: {here} in body should be less "
                                                      f"than or equal to {schema['maximum']}"))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            causes.append((here, "FieldValueInvalid", f"Invalid value: {len(value)}: {here} in body should have at "
                                                      f"least {schema['minItems']} items"))
        items = schema.get("items")
        if isinstance(items, Mapping):
            pruned = []
            for index, item in enumerate(value):
                item_value, item_causes = check(items, item, f"{path}[{index}]", root=False)
                pruned.append(item_value)
                causes += item_causes
            value = pruned
    if isinstance(value, dict):
        value, object_causes = _check_object(schema, value, path, root)
        causes += object_causes
    return value, causes


def _check_object(schema: Mapping[str, Any], value: dict[str, Any], path: str, root: bool
                  ) -> tuple[dict[str, Any], list[Cause]]:
    causes: list[Cause] = []
    properties: Mapping[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or extra is True
    result: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if root and key in ("apiVersion", "kind", "metadata"):
            result[key] = item
        elif key in properties:
            result[key], item_causes = check(properties[key], item, where, root=False)
            causes += item_causes
        elif isinstance(extra, Mapping):
            result[key], item_causes = check(extra, item, where, root=False)
            causes += item_causes
        elif keep_unknown:
            result[key] = item
        # else: pruned, as a structural schema does
    for key in schema.get("required") or []:
        if key not in value:
            causes.append((f"{path}.{key}" if path else key, "FieldValueRequired", "Required value"))
    return result, causes
