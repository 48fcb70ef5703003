"""``aggregation_algorithm`` -> :class:`Strategy`: a name table plus ``package.module:Class`` imports.

A dict, not an ``if algo == ...`` chain, so the known names are data (listed in errors, testable), and a
user's own strategy needs no fork and no registration: it is named by import path in the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fedmist.imports import import_object
from fedmist.strategy.base import Strategy
from fedmist.strategy.fedavg import FedAvg, FedProx
from fedmist.strategy.fedopt import FedAdagrad, FedAdam, FedYogi
from fedmist.strategy.robust import FedMedian, Krum, MultiKrum, TrimmedMean

#: The built-in strategies by their manifest name (read-only).
STRATEGIES: Mapping[str, type[Strategy]] = MappingProxyType(
    {
        "fedavg": FedAvg,
        "fedprox": FedProx,
        "fedadam": FedAdam,
        "fedyogi": FedYogi,
        "fedadagrad": FedAdagrad,
        "fedmedian": FedMedian,
        "trimmedmean": TrimmedMean,
        "krum": Krum,
        "multikrum": MultiKrum,
    }
)


def import_strategy(path: str) -> type[Strategy]:
    """Import ``package.module:ClassName`` (fedmist.imports, the one import-path resolver) and check that it is a
    concrete :class:`Strategy` subclass."""
    target: Any = import_object(path, "strategy")
    if not (isinstance(target, type) and issubclass(target, Strategy)):
        raise ValueError(f"strategy {path!r} is not a subclass of fedmist.strategy.Strategy")
    if getattr(target, "__abstractmethods__", None):
        missing = ", ".join(sorted(target.__abstractmethods__))
        raise ValueError(f"strategy {path!r} is abstract (does not implement {missing})")
    return target


def resolve_strategy(name_or_path: str) -> type[Strategy]:
    """The class for a built-in name (any case) or an import path; ``ValueError`` listing the names otherwise."""
    key = name_or_path.strip()
    if ":" in key:
        return import_strategy(key)
    cls = STRATEGIES.get(key.lower())
    if cls is None:
        known = ", ".join(STRATEGIES)
        raise ValueError(
            f"unknown aggregation_algorithm {name_or_path!r}; known: {known} (or package.module:ClassName)"
        )
    return cls


def build_strategy(name_or_path: str, params: Mapping[str, Any], **kwargs: Any) -> Strategy:
    """Build the strategy a manifest names, configured from its env ``params`` (strings, any case).

    ``kwargs`` are code-only constructor arguments such as ``evaluate_fn``.
    """
    return resolve_strategy(name_or_path).from_params(params, **kwargs)
