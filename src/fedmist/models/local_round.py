"""One FedAvg-family round as a trainer resolves it: the round config it is sent, its LocalConfig, its rows.

Why one module: the real trainer (``worker/rounds/trainer.py``) and a simulated client (``simulate/client.py``)
must train identically for ``fedmist simulate --partition job`` to be the real job's computation (DESIGN
section 7.2). Each rule here existed twice before, and the two copies had drifted (the simulation passed no
``round``/``rounds`` and held out no validation rows). The rules:

- the aggregator sends its own ``epochs``/``batch_size``/``learning_rate`` (when the job sets them) under the
  strategy's config (:func:`round_config`);
- the trainer's own env wins (Sedna puts epochs/batch_size in the trainer template), then the round's config,
  then ``LOCAL_TRAINING_DEFAULTS``; ``mu`` is the strategy's when it sends one (:func:`local_config`);
- the shuffling seed mixes the trainer's ``seed``, the round and the worker's name, so each trainer and round
  draws its own batches, reproducibly;
- a trainer holds out a seeded ``validation_split`` of its rows and trains on the rest (:func:`local_rows`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedmist.models.local_train import LocalConfig, validation_split
from fedmist.spec.params import LOCAL_TRAINING_DEFAULTS, JobParams

#: the aggregator's parameters that travel in every round's config (the trainer's own env still wins)
SENT_PARAMS = tuple(LOCAL_TRAINING_DEFAULTS)


def round_config(aggregator: JobParams, strategy_config: Mapping[str, Any]) -> dict[str, Any]:
    """The config of a round's FIT: the aggregator's local-training parameters it sets, then the strategy's."""
    own = {name: getattr(aggregator, name) for name in SENT_PARAMS if getattr(aggregator, name) is not None}
    return {**own, **strategy_config}


def mixed_seed(seed: int, round: int, worker: str) -> int:
    """The local shuffling seed of ``worker`` in ``round``: distinct per worker and round, fixed by the job's."""
    return (int(seed) * 1_000_003 + int(round) * 7919 + zlib.crc32(worker.encode())) % (2**63)


def local_config(params: JobParams, config: Mapping[str, Any], worker: str, round: int, rounds: int) -> LocalConfig:
    """``worker``'s LocalConfig for ``round`` of ``rounds`` from its own (defaulted) parameters and the round's
    config; ``ValueError`` (one line) for a config value of the wrong type (a protocol error for a trainer)."""

    def pick(own: Any, key: str, default: Any, kind: type) -> Any:
        value = own if own is not None else config.get(key, default)
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"round config {key}={value!r} is not a {kind.__name__}") from None

    local = LOCAL_TRAINING_DEFAULTS
    return LocalConfig(epochs=max(1, pick(params.epochs, "epochs", local["epochs"], int)),
                       batch_size=max(1, pick(params.batch_size, "batch_size", local["batch_size"], int)),
                       learning_rate=pick(params.learning_rate, "learning_rate", local["learning_rate"], float),
                       mu=max(0.0, pick(None if "mu" in config else params.mu, "mu", 0.0, float)),
                       seed=mixed_seed(params.seed or 0, round, worker), round=round, rounds=max(1, rounds))


def local_rows(n: int, params: JobParams) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` positions among a trainer's ``n`` samples: its seeded ``validation_split``."""
    return validation_split(n, params.validation_split or 0.0, params.seed or 0)
