"""Model lookup by name or by import path, so users can bring their own model without forking fedmist.

Built-in names live in a dict (no string if/elif dispatch); anything containing ``:`` is an import path
``package.module:factory`` called with the same keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fedmist.imports import import_callable
from fedmist.models.lenet import lenet5

ModelFactory = Callable[..., nn.Module]


def builtin_models() -> dict[str, ModelFactory]:
    """The registry of built-in factories, built on call so nothing is global state at import time."""
    return {"lenet5": lenet5}


def _import_factory(path: str) -> ModelFactory:
    """Resolve ``package.module:factory`` through fedmist.imports, the one import-path resolver, so a model
    fails the way every other kind of user code does."""
    return import_callable(path, "model factory")


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
