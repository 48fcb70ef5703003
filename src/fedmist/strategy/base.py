"""The :class:`Strategy` ABC: what the round engine asks of an aggregation algorithm.

The engine only ever calls this interface: pick the workers of a round (:meth:`Strategy.configure_fit`), fold
their results in as they arrive (:meth:`~Strategy.begin_round` / :meth:`~Strategy.accumulate` /
:meth:`~Strategy.finish_round`), and optionally evaluate. The streaming trio is the primary path because a
1 GB model must aggregate without N copies in memory; :meth:`Strategy.aggregate_fit` is a template method on
top of it, so the batch and streaming paths cannot drift apart.

Subclasses implement three hooks -- ``_begin_round``, ``_accumulate``, ``_finish_round`` -- and get input
validation (keys, shapes, duplicate workers, call order) from the public methods here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from fedmist.strategy.aggregate import Layout, check_compatible, check_layout
from fedmist.strategy.params import select_parameters, strategy_parameters
from fedmist.strategy.sampling import draw, sample_size
from fedmist.strategy.streaming import FoldClosed, PartialFold
from fedmist.strategy.types import (
    ConfigValue,
    EvaluateInstructions,
    FitInstructions,
    FitResult,
    InsufficientWorkersError,
    Weights,
)

#: Server-side evaluation injected by the runtime (it owns torch and the test set; the strategy does not).
EvaluateFn = Callable[[int, Weights], Mapping[str, float] | None]


class Strategy(ABC):
    """A federated aggregation algorithm: round configuration, (streaming) aggregation, optional evaluation.

    Constructor parameters are keyword-only, stored under their own names (``self.fraction_fit`` ...), and
    settable from a manifest env via :meth:`from_params`.
    """

    def __init__(
        self, *, fraction_fit: float = 1.0, min_clients: int = 1, min_fit_clients: int | None = None,
        min_available_clients: int | None = None, evaluate_fn: EvaluateFn | None = None
    ) -> None:
        if not (0.0 < fraction_fit <= 1.0):
            raise ValueError(f"fraction_fit must be in (0, 1], got {fraction_fit}")
        for name, value in (("min_clients", min_clients), ("min_fit_clients", min_fit_clients),
                            ("min_available_clients", min_available_clients)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.fraction_fit = float(fraction_fit)
        self.min_clients = int(min_clients)
        # Flower's names; unset, both are min_clients (the round's quorum), the rule before they existed
        self.min_fit_clients = int(min_fit_clients) if min_fit_clients is not None else self.min_clients
        self.min_available_clients = (int(min_available_clients) if min_available_clients is not None
                                      else self.min_clients)
        self.evaluate_fn = evaluate_fn
        self._round: int | None = None
        self._global: Weights | None = None
        self._seen: list[str] = []
        self._open_fold: PartialFold | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **kwargs: Any) -> Self:
        """Build from a user env mapping (string values, any case); unrelated keys are ignored.

        ``kwargs`` pass code-only arguments (e.g. ``evaluate_fn``) straight to the constructor.
        """
        return cls(**select_parameters(cls, params), **kwargs)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name, None)!r}" for name in strategy_parameters(type(self)))
        return f"{type(self).__name__}({shown})"

    # ---- round configuration -------------------------------------------------------------------------
    def num_fit_workers(self, num_available: int) -> int:
        """``max(min_fit_clients, ceil(fraction_fit * available))``, never more than are available."""
        return sample_size(num_available, self.fraction_fit, self.min_fit_clients)

    def sample(self, available: Sequence[str], rng: np.random.Generator) -> list[str]:
        """Choose this round's workers without replacement; sorted, and independent of the input order.

        Raises :class:`InsufficientWorkersError` when fewer than ``min_clients`` or ``min_available_clients``
        are available, so the engine waits instead of running a round that could never reach quorum. The
        engine passes the round's own generator (:mod:`fedmist.strategy.sampling`).
        """
        pool = sorted(set(available))
        need = max(self.min_clients, self.min_available_clients)
        if len(pool) < need:
            raise InsufficientWorkersError(
                f"{len(pool)} worker(s) available, min_clients is {self.min_clients}, "
                f"min_available_clients is {self.min_available_clients}"
            )
        return draw(pool, self.num_fit_workers(len(pool)), rng)

    def fit_config(self, round: int) -> dict[str, ConfigValue]:
        """Configuration every selected trainer receives; subclasses add their keys (FedProx: ``mu``)."""
        return {"round": round}

    def configure_fit(
        self, round: int, global_weights: Weights, available: list[str], rng: np.random.Generator
    ) -> FitInstructions:
        """Which workers train in ``round`` and with what configuration."""
        return FitInstructions(workers=self.sample(available, rng), config=self.fit_config(round))

    def configure_evaluate(
        self, round: int, global_weights: Weights, available: list[str], rng: np.random.Generator
    ) -> EvaluateInstructions | None:
        """Federated evaluation on the workers; ``None`` (the default) means none this round."""
        return None

    def evaluate(self, round: int, global_weights: Weights) -> dict[str, float] | None:
        """Server-side evaluation of the new global model via the injected ``evaluate_fn``, if any."""
        if self.evaluate_fn is None:
            return None
        metrics = self.evaluate_fn(round, global_weights)
        return None if metrics is None else {k: float(v) for k, v in metrics.items()}

    # ---- aggregation: streaming path (primary) -----------------------------------------------------------
    def begin_round(self, round: int, global_weights: Weights) -> None:
        """Start aggregating ``round`` on top of ``global_weights`` (never modified); discards any unfinished round."""
        self._drop_open_fold()
        self._round = round
        self._global = global_weights
        self._seen = []
        self._begin_round(round, global_weights)

    def accumulate(self, result: FitResult) -> None:
        """Fold one worker's result in (validated first, so a bad one leaves the round untouched)."""
        if self._global is None or self._round is None:
            raise RuntimeError("accumulate() called before begin_round()")
        if result.worker in self._seen:
            raise ValueError(f"worker {result.worker}: second result in round {self._round} rejected")
        check_compatible(result.weights, self._global, f"worker {result.worker}")
        self._accumulate(result)
        self._seen.append(result.worker)

    def finish_round(self) -> Weights:
        """The new global model from everything accumulated since :meth:`begin_round`."""
        if self._global is None or self._round is None:
            raise RuntimeError("finish_round() called before begin_round()")
        self._drop_open_fold()  # an update still arriving at the deadline is late: it never counts
        round_, global_weights = self._round, self._global
        self._round, self._global = None, None
        if not self._seen:
            raise ValueError(f"round {round_}: no results to aggregate")
        return self._finish_round(round_, global_weights)

    # ---- aggregation: slice by slice, as an update's bytes arrive -------------------------------------------
    @property
    def folds_slices(self) -> bool:
        """True when an update can be folded in slices as it arrives (:meth:`open_fold`), so the aggregator
        never holds it whole. False by default: a rule that needs every update at once (median, Krum) or a
        subclass with its own ``_accumulate`` gets whole updates through :meth:`accumulate`."""
        return False

    def open_fold(self, worker: str, num_samples: int, layout: Layout,
                  spool_dir: Path | None = None) -> PartialFold:
        """Start folding ``worker``'s update, judged by its ``layout`` (from its header) before any value.

        Raises ``ValueError`` for a second result of the worker, a layout that does not match the global model,
        or a strategy that does not fold slices. One fold is open at a time; :meth:`commit_fold` books it.
        """
        if self._global is None or self._round is None:
            raise RuntimeError("open_fold() called before begin_round()")
        if not self.folds_slices:
            raise ValueError(f"{type(self).__name__} aggregates whole updates only")
        if self._open_fold is not None and self._open_fold.state == "open":
            raise RuntimeError(f"open_fold({worker}) while the update of {self._open_fold.worker} is open")
        if worker in self._seen:
            raise ValueError(f"worker {worker}: second result in round {self._round} rejected")
        FitResult(worker, {}, num_samples)  # the same num_samples check as a whole result
        check_layout(layout, self._global, f"worker {worker}")
        self._open_fold = self._begin_fold(worker, num_samples, spool_dir)
        return self._open_fold

    def commit_fold(self, fold: PartialFold) -> None:
        """Count a fully folded update; FoldClosed if the round ended (and rolled it back) meanwhile."""
        if fold is not self._open_fold:
            raise FoldClosed(f"the update of {fold.worker} does not belong to the open round")
        fold.commit()
        self._seen.append(fold.worker)
        self._open_fold = None

    def _begin_fold(self, worker: str, num_samples: int, spool_dir: Path | None) -> PartialFold:
        """The strategy's fold target; strategies whose :attr:`folds_slices` is True override this."""
        raise NotImplementedError

    def _drop_open_fold(self) -> None:
        fold, self._open_fold = getattr(self, "_open_fold", None), None
        if fold is not None:
            fold.rollback()

    @property
    def accumulated_workers(self) -> list[str]:
        """Workers folded into the current round so far, in arrival order."""
        return list(self._seen)

    def aggregate_fit(self, round: int, results: list[FitResult], global_weights: Weights) -> Weights:
        """Batch aggregation, defined as the streaming path so both give identical results."""
        self.begin_round(round, global_weights)
        for result in results:
            self.accumulate(result)
        return self.finish_round()

    # ---- checkpointing --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """State carried across rounds, as flat numpy arrays (safetensors-ready). Stateless by default."""
        return {}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict`; a stateless strategy accepts only an empty state."""
        if state:
            raise ValueError(f"{type(self).__name__} has no state, got keys {sorted(state)[:5]}")

    # ---- hooks for subclasses -----------------------------------------------------------------------------
    @abstractmethod
    def _begin_round(self, round: int, global_weights: Weights) -> None:
        """Reset per-round accumulation state."""

    @abstractmethod
    def _accumulate(self, result: FitResult) -> None:
        """Fold in one validated result; memory-bounded strategies must not keep ``result.weights``."""

    @abstractmethod
    def _finish_round(self, round: int, global_weights: Weights) -> Weights:
        """Produce the new global weights (same keys, order, shapes and dtypes as ``global_weights``)."""
