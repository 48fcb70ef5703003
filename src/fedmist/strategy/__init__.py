"""Pluggable round logic for the FedAvg family: a small :class:`Strategy` ABC, pure helpers, a registry.

numpy only (no torch), so the aggregator's arithmetic is testable against hand-computed values and the
runtime can feed it arrays decoded straight from the wire.
"""

from fedmist.strategy.base import EvaluateFn, Strategy
from fedmist.strategy.fedavg import FedAvg, FedProx, proximal_gradient, proximal_term
from fedmist.strategy.fedopt import FedAdagrad, FedAdam, FedOpt, FedYogi
from fedmist.strategy.registry import STRATEGIES, build_strategy, resolve_strategy
from fedmist.strategy.robust import BufferedStrategy, FedMedian, Krum, MultiKrum, TrimmedMean
from fedmist.strategy.types import (
    EvaluateInstructions,
    FitInstructions,
    FitResult,
    InsufficientWorkersError,
    Weights,
)

__all__ = [
    "STRATEGIES",
    "BufferedStrategy",
    "EvaluateFn",
    "EvaluateInstructions",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedMedian",
    "FedOpt",
    "FedProx",
    "FedYogi",
    "FitInstructions",
    "FitResult",
    "InsufficientWorkersError",
    "Krum",
    "MultiKrum",
    "Strategy",
    "TrimmedMean",
    "Weights",
    "build_strategy",
    "proximal_gradient",
    "proximal_term",
    "resolve_strategy",
]
