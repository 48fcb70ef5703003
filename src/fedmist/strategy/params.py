"""Turn a user's env mapping (strings, any letter case) into a strategy's typed constructor arguments.

The accepted parameters are read from the constructors' own signatures (every class in the MRO, so a
subclass that forwards ``**kwargs`` still exposes its parents' parameters). Nothing is listed twice, and a
user's ``package.module:Class`` strategy gets env support without registering anything.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

#: Types a manifest env value can be coerced into; other constructor parameters (callables) are code-only.
SCALAR_TYPES: tuple[type, ...] = (bool, int, float, str)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _scalar_type(hint: Any) -> tuple[type, bool] | None:
    """``(type, optional)`` for ``int``, ``float | None`` and the like; ``None`` for non-scalar hints."""
    if hint in SCALAR_TYPES:
        return hint, False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) == 1 and args[0] in SCALAR_TYPES:
            return args[0], optional
    return None


def strategy_parameters(cls: type) -> dict[str, tuple[type, bool]]:
    """Name -> ``(type, optional)`` of every keyword parameter with a scalar type hint, across the MRO."""
    found: dict[str, tuple[type, bool]] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        hints = typing.get_type_hints(init)
        for name, param in inspect.signature(init).parameters.items():
            if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or name in found:
                continue
            scalar = _scalar_type(hints.get(name))
            if scalar is not None:
                found[name] = scalar
    return found


def coerce(name: str, value: Any, target: type, optional: bool = False) -> Any:
    """Convert one env value to ``target``, raising a one-line ``ValueError`` naming the parameter."""
    if value is None and optional:
        return None
    problem = f"strategy parameter {name}={value!r}: expected {'an' if target is int else 'a'} {target.__name__}"
    if target is str:
        return str(value)
    if target is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(problem)
    if isinstance(value, bool):
        raise ValueError(problem)
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(problem) from None
    if not math.isfinite(number):
        raise ValueError(f"{problem} (finite)")
    if target is int:
        if not number.is_integer():
            raise ValueError(problem)
        return int(number)
    return number


def lower_keys(params: Mapping[str, Any]) -> dict[str, Any]:
    """Case-fold keys (DESIGN section 4: ``MU`` and ``mu`` are one parameter); conflicting spellings fail."""
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in params.items():
        low = str(key).lower()
        if low in out and out[low] != value:
            raise ValueError(f"parameter {low} is set twice with different values ({spelled[low]}, {key})")
        out[low] = value
        spelled[low] = str(key)
    return out


def select_parameters(cls: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """The typed keyword arguments for ``cls`` found in ``params``; unrelated env keys are ignored.

    ``None`` means "not set: use the strategy's default" (the spec layer's ``JobParams`` convention), so a
    validated ``JobParams.model_dump()`` can be passed as it is.
    """
    wanted = strategy_parameters(cls)
    lowered = {k: v for k, v in lower_keys(params).items() if v is not None}
    return {
        name: coerce(name, lowered[name], target, optional)
        for name, (target, optional) in wanted.items()
        if name in lowered
    }
