"""Byzantine-robust aggregators: coordinate-wise median, trimmed mean, Krum and Multi-Krum.

Unlike FedAvg these statistics need every result of the round at once, so :meth:`accumulate` buffers them:
**memory is N model copies** (plus one float32 stack of a single tensor while reducing it). That is the price
of robustness; use FedAvg/FedOpt for very large models or very many workers.

They are deliberately *unweighted* in the statistic itself -- a robust rule must not let one client outvote
the others by claiming many samples. Multi-Krum's final average over its selected clients is
sample-weighted (it is FedAvg over clients already judged honest).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from fedmist.strategy.aggregate import coordinate_median, krum_scores, trimmed_mean, weighted_mean
from fedmist.strategy.base import Strategy
from fedmist.strategy.types import FitResult, Weights


def _like(weights: Weights, global_weights: Weights) -> Weights:
    """``weights`` in the global model's key order and dtypes (copies, never views of a client's arrays)."""
    return {key: np.array(weights[key], dtype=ref.dtype, copy=True) for key, ref in global_weights.items()}


class BufferedStrategy(Strategy):
    """A strategy whose rule needs the whole round: results are buffered, then :meth:`combine`\\ d."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._results: list[FitResult] = []

    def _begin_round(self, round: int, global_weights: Weights) -> None:
        self._results = []

    def _accumulate(self, result: FitResult) -> None:
        self._results.append(result)

    def _finish_round(self, round: int, global_weights: Weights) -> Weights:
        results, self._results = self._results, []
        return _like(self.combine(round, results, global_weights), global_weights)

    @abstractmethod
    def combine(self, round: int, results: list[FitResult], global_weights: Weights) -> Weights:
        """The new global weights from all of the round's (validated) results, in arrival order."""


class FedMedian(BufferedStrategy):
    """Coordinate-wise median of the workers' weights (Yin et al. 2018); counters from the first result."""

    def combine(self, round: int, results: list[FitResult], global_weights: Weights) -> Weights:
        return coordinate_median([r.weights for r in results])


class TrimmedMean(BufferedStrategy):
    """Coordinate-wise mean after trimming ``floor(beta * n)`` values from each end (Yin et al. 2018).

    ``beta`` in ``[0, 0.5)``, default 0.2 (5 workers: the lowest and the highest value of each coordinate go).
    """

    def __init__(self, *, beta: float = 0.2, **kwargs: Any) -> None:
        if not 0.0 <= beta < 0.5:
            raise ValueError(f"beta must be in [0, 0.5), got {beta}")
        super().__init__(**kwargs)
        self.beta = float(beta)

    def combine(self, round: int, results: list[FitResult], global_weights: Weights) -> Weights:
        try:
            return trimmed_mean([r.weights for r in results], self.beta)
        except ValueError as exc:
            raise ValueError(f"round {round}: {exc}") from None


class Krum(BufferedStrategy):
    """Krum (Blanchard et al. 2017): keep the single result closest to its ``n - f - 2`` nearest neighbours.

    ``num_malicious`` is ``f``, the number of Byzantine workers tolerated (guarantee needs ``n > 2f + 2``).
    After each round ``selected`` names the kept worker(s) and ``scores`` every worker's Krum score, so the
    runtime can report who was left out.
    """

    def __init__(self, *, num_malicious: int = 0, **kwargs: Any) -> None:
        if num_malicious < 0:
            raise ValueError(f"num_malicious must be >= 0, got {num_malicious}")
        super().__init__(**kwargs)
        self.num_malicious = int(num_malicious)
        self.selected: list[str] = []
        self.scores: dict[str, float] = {}

    def num_selected(self, n: int) -> int:
        """How many of ``n`` results to keep: exactly one for Krum."""
        return 1

    def combine(self, round: int, results: list[FitResult], global_weights: Weights) -> Weights:
        scores = krum_scores([r.weights for r in results], self.num_malicious)
        order = np.argsort(scores, kind="stable")[: self.num_selected(len(results))]
        chosen = [results[int(i)] for i in order]
        self.scores = {r.worker: float(s) for r, s in zip(results, scores, strict=True)}
        self.selected = [r.worker for r in chosen]
        if len(chosen) == 1:
            return chosen[0].weights  # exactly that client's model, not a rounding of n*x/n
        try:
            return weighted_mean([r.weights for r in chosen], [r.num_samples for r in chosen])
        except ValueError as exc:
            raise ValueError(f"round {round}: {exc}") from None


class MultiKrum(Krum):
    """Multi-Krum (El Mhamdi et al. 2018): sample-weighted mean of the ``m`` best Krum scores.

    ``m`` defaults to ``n - f`` (all but the tolerated attackers) and is clamped to ``[1, n]``.
    """

    def __init__(self, *, m: int | None = None, **kwargs: Any) -> None:
        if m is not None and m < 1:
            raise ValueError(f"m must be >= 1, got {m}")
        super().__init__(**kwargs)
        self.m = m

    def num_selected(self, n: int) -> int:
        wanted = n - self.num_malicious if self.m is None else self.m
        return max(1, min(n, wanted))
