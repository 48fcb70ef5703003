"""FedAvg (McMahan et al. 2017) and FedProx (Li et al. 2020): sample-weighted averaging, streamed.

FedAvg keeps one running ``sum_i n_i x_i`` (:class:`~fedmist.strategy.aggregate.WeightedSum`), so the
aggregator holds the global model plus one accumulator however many workers report -- the "about two
copies" bound of the FedAvg issue.

FedProx changes only the *trainer*: its local objective gains ``mu/2 * ||w - w_global||^2``. The server side is
FedAvg; the strategy's job is to send ``mu`` in every round's fit config. :func:`proximal_term` and
:func:`proximal_gradient` are the numpy reference the torch trainer is tested against.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fedmist.strategy.aggregate import WeightedSum, check_compatible, is_floating
from fedmist.strategy.base import Strategy
from fedmist.strategy.streaming import PartialFold
from fedmist.strategy.types import ConfigValue, FitResult, Weights


class FedAvg(Strategy):
    """Sample-weighted mean of the workers' weights: ``x = sum_i n_i x_i / sum_i n_i``.

    Non-floating entries (e.g. ``num_batches_tracked``) come from the first result to arrive. Memory: one
    model-sized accumulator (in at least float32) on top of the global model.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sum: WeightedSum | None = None

    def _begin_round(self, round: int, global_weights: Weights) -> None:
        self._sum = WeightedSum(global_weights)

    def _accumulate(self, result: FitResult) -> None:
        assert self._sum is not None  # guaranteed by Strategy.accumulate
        self._sum.add(result.weights, float(result.num_samples))

    @property
    def folds_slices(self) -> bool:
        """A running weighted sum takes an update in any slices; a subclass that changes ``_accumulate``
        (weighting by its metrics, say) needs the whole update and falls back to that path."""
        return type(self)._accumulate is FedAvg._accumulate

    def _begin_fold(self, worker: str, num_samples: int, spool_dir: Path | None) -> PartialFold:
        assert self._sum is not None and self._global is not None
        return PartialFold(self._sum, self._global, worker, float(num_samples), spool_dir)

    def _average(self, round: int) -> Weights:
        """The round's weighted mean; shared with the server-optimizer strategies."""
        assert self._sum is not None
        acc, self._sum = self._sum, None
        try:
            return acc.finish()
        except ValueError as exc:
            raise ValueError(f"round {round}: {exc}") from None

    def _finish_round(self, round: int, global_weights: Weights) -> Weights:
        return self._average(round)


class FedProx(FedAvg):
    """FedAvg aggregation; trainers minimise ``loss + mu/2 * ||w - w_global||^2`` with ``mu`` from the config.

    ``mu`` defaults to 0.01, within the range Li et al. found useful ({0.001, 0.01, 0.1, 1}); ``mu = 0`` is FedAvg.
    """

    def __init__(self, *, mu: float = 0.01, **kwargs: Any) -> None:
        if not (math.isfinite(mu) and mu >= 0):
            raise ValueError(f"mu must be finite and >= 0, got {mu}")
        super().__init__(**kwargs)
        self.mu = float(mu)

    def fit_config(self, round: int) -> dict[str, ConfigValue]:
        return {**super().fit_config(round), "mu": self.mu}


def proximal_term(local: Weights, global_weights: Weights, mu: float) -> float:
    """``mu / 2 * sum_k ||local[k] - global[k]||^2`` over floating entries, in float64.

    The value the trainer adds to its loss each step; counters (``num_batches_tracked``) are not parameters
    and are skipped, as a torch trainer iterating ``model.parameters()`` would.
    """
    check_compatible(local, global_weights, "proximal_term")
    total = 0.0
    for key, ref in global_weights.items():
        if is_floating(ref):
            diff = np.asarray(local[key], dtype=np.float64) - np.asarray(ref, dtype=np.float64)
            total += float(np.square(diff).sum())
    return 0.5 * mu * total


def proximal_gradient(local: Weights, global_weights: Weights, mu: float) -> Weights:
    """Gradient of :func:`proximal_term` w.r.t. ``local``: ``mu * (local - global)`` per floating entry."""
    check_compatible(local, global_weights, "proximal_gradient")
    return {
        key: (mu * (local[key] - ref)).astype(ref.dtype, copy=False)
        for key, ref in global_weights.items()
        if is_floating(ref)
    }
