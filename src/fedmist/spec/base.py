"""The pydantic base for manifest objects and the walk that reports fields we ignore.

Why "allow extras, then walk": Sedna/Kubernetes manifests carry many fields that mean nothing locally
(``imagePullPolicy``, ``volumes``...) and users add typos. Validation must not fail on either, but the user
should hear about typos. Each model lists the known-but-unused Kubernetes fields it accepts silently (or
with a note); anything else is reported as an unknown field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class K8sModel(BaseModel):
    """camelCase keys in YAML, snake_case attributes in Python, frozen, unknown keys kept for the walk."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, frozen=True)

    # Known Kubernetes fields that are accepted without a warning (value None) or with a note (value str).
    KNOWN_IGNORED: ClassVar[dict[str, str | None]] = {}
    # False where any key is legitimate (e.g. resource names like ``nvidia.com/gpu``).
    WARN_EXTRAS: ClassVar[bool] = True


UNKNOWN_FIELD = "unknown field, ignored"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def ignored_fields(model: BaseModel, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(field path, message)`` for every extra key in ``model`` and the models nested in it."""
    cls = type(model)
    known: dict[str, str | None] = getattr(cls, "KNOWN_IGNORED", {})
    warn_extras: bool = getattr(cls, "WARN_EXTRAS", True)
    for key in model.model_extra or {}:
        note = known.get(key, UNKNOWN_FIELD if warn_extras else None)
        if note is not None:
            yield _join(path, key), note
    for name, info in cls.model_fields.items():
        yield from _walk(getattr(model, name), _join(path, info.alias or name))


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, BaseModel):
        yield from ignored_fields(value, path)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def scalar_to_str(value: object) -> str:
    """YAML turns ``value: 100`` into an int and ``value: yes`` into a bool; Kubernetes env values and
    annotations are strings, so convert scalars the way a user reading the YAML would expect."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError("must be a string, number or boolean")
