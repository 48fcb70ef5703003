"""Model lookup by name or by import path, so users can bring their own model without forking fedmist.

Built-in names live in a dict (no string if/elif dispatch); anything containing ``:`` is an import path
``package.module:factory`` called with the same keyword arguments.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from fedmist.models.lenet import lenet5

ModelFactory = Callable[..., nn.Module]


def builtin_models() -> dict[str, ModelFactory]:
    """The registry of built-in factories, built on call so nothing is global state at import time."""
    return {"lenet5": lenet5}


def _import_factory(path: str) -> ModelFactory:
    """Resolve ``package.module:factory`` (the attribute may be dotted, e.g. ``mod:Class.build``)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model import path {path!r} must look like 'package.module:factory'")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import model module {module_name!r} from {path!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"model import path {path!r}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"model import path {path!r} does not name a callable factory")
    return obj  # type: ignore[return-value]


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a model by registry name (``lenet5``) or import path (``package.module:factory``)."""
    if ":" in name:
        factory = _import_factory(name)
    else:
        registry = builtin_models()
        key = name.strip().lower()
        if key not in registry:
            raise ValueError(
                f"unknown model {name!r}: use one of {sorted(registry)} or an import path 'package.module:factory'"
            )
        factory = registry[key]
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model factory {name!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model
