"""Our own aggregation: FedAvg with server momentum (FedAvgM, Hsu et al. 2019), as a fedmist Strategy.

Each round the server treats ``global - average`` as a gradient and takes a momentum step on it:
``v <- momentum * v + (global - average)``, ``global <- global - v``. With ``server_momentum: 0`` it is FedAvg.
Named in the manifests as ``aggregation_algorithm: fmnist_cnn.strategy:FedAvgM``; ``server_momentum`` is read
from the aggregator's env like any strategy parameter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedmist.strategy import FedAvg
from fedmist.strategy.types import Weights


class FedAvgM(FedAvg):
    def __init__(self, *, server_momentum: float = 0.5, **kwargs: Any) -> None:
        if not 0.0 <= server_momentum < 1.0:
            raise ValueError(f"server_momentum must be in [0, 1), got {server_momentum}")
        super().__init__(**kwargs)
        self.server_momentum = float(server_momentum)
        self._velocity: dict[str, np.ndarray] = {}

    def _finish_round(self, round: int, global_weights: Weights) -> Weights:
        average = self._average(round)
        out: dict[str, np.ndarray] = {}
        for key, value in average.items():
            if not np.issubdtype(value.dtype, np.floating):
                out[key] = value
                continue
            step = global_weights[key].astype(np.float32) - value.astype(np.float32)
            velocity = self.server_momentum * self._velocity.get(key, np.zeros_like(step)) + step
            self._velocity[key] = velocity
            out[key] = (global_weights[key] - velocity).astype(value.dtype)
        return out
