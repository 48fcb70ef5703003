"""Plain data records exchanged between the round engine and a strategy.

They are deliberately framework-free (numpy arrays keyed by parameter name, as in a PyTorch ``state_dict``)
so that the strategy layer stays importable and testable without torch, and so that the same records can be
decoded straight from the wire (safetensors / raw little-endian buffers, DESIGN section 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: A model as an ordered mapping of parameter/buffer name to array (the numpy view of a ``state_dict``).
#: Floating entries are aggregated; non-floating entries (integer counters such as BatchNorm's
#: ``num_batches_tracked``, boolean masks) are never averaged -- see :mod:`fedmist.strategy.aggregate`.
Weights = dict[str, np.ndarray]

#: Values a strategy may put into a round's configuration; they must survive a JSON header unchanged.
ConfigValue = float | int | str


class InsufficientWorkersError(ValueError):
    """Fewer workers are available than ``min_clients``: the engine should wait for more, not start a round.

    A distinct type (still a ``ValueError``) so the round engine can catch exactly this and keep waiting,
    while any other ``ValueError`` stays a real error.
    """


@dataclass(frozen=True, slots=True)
class FitResult:
    """One worker's answer to a fit round: its locally trained weights and how many samples produced them.

    ``num_samples`` weights the worker's contribution in sample-weighted strategies (FedAvg and the server
    optimizers); ``metrics`` carries whatever the trainer measured (loss, local accuracy, seconds).
    """

    worker: str
    weights: Weights
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, (int, np.integer)):
            raise ValueError(f"worker {self.worker}: num_samples must be an integer, got {self.num_samples!r}")
        if self.num_samples < 0:
            raise ValueError(f"worker {self.worker}: num_samples must be >= 0, got {self.num_samples}")


@dataclass(frozen=True, slots=True)
class FitInstructions:
    """Which workers train this round, and the configuration each of them receives (e.g. ``round``, ``mu``)."""

    workers: list[str]
    config: dict[str, ConfigValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EvaluateInstructions:
    """Which workers evaluate the global model this round (federated evaluation), and their configuration."""

    workers: list[str]
    config: dict[str, ConfigValue] = field(default_factory=dict)
