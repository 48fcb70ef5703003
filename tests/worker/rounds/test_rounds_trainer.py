"""The trainer's round configuration: its own env first (Sedna's habit), then the round config, then defaults."""

from __future__ import annotations

import pytest

from fedmist.wire import messages as msg
from fedmist.wire.envelope import ProtocolError
from fedmist.worker.context import WorkerContext
from fedmist.worker.rounds.trainer import RoundsTrainer


def _trainer(**env: str) -> RoundsTrainer:
    ctx = WorkerContext.from_env("trainer", {"JOB_NAME": "j", "WORKER_NAME": "edge1", **env})
    return RoundsTrainer(ctx, data=None, reporter=None)  # type: ignore[arg-type]


def test_trainer_env_wins_then_round_config_then_defaults() -> None:
    trainer = _trainer(epochs="2", BATCH_SIZE="16")
    config = trainer.local_config(msg.FitMeta(config={"epochs": 5, "learning_rate": 0.05, "mu": 0.1}), 3)
    assert (config.epochs, config.batch_size, config.learning_rate, config.mu) == (2, 16, 0.05, 0.1)
    plain = _trainer().local_config(msg.FitMeta(), 1)
    assert (plain.epochs, plain.batch_size, plain.learning_rate, plain.mu, plain.momentum) == (1, 32, 0.01, 0.0, 0.9)


def test_seeds_differ_per_round_and_worker_but_repeat() -> None:
    a, b = _trainer(), _trainer(WORKER_NAME="edge2")
    assert a.local_config(msg.FitMeta(), 1).seed == a.local_config(msg.FitMeta(), 1).seed
    assert a.local_config(msg.FitMeta(), 1).seed != a.local_config(msg.FitMeta(), 2).seed
    assert a.local_config(msg.FitMeta(), 1).seed != b.local_config(msg.FitMeta(), 1).seed


def test_a_garbled_round_config_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="round config epochs='many' is not a int"):
        _trainer().local_config(msg.FitMeta(config={"epochs": "many"}), 1)


def test_fit_meta_is_strict() -> None:
    from fedmist.wire.envelope import Envelope

    with pytest.raises(ProtocolError, match="meta.surprise"):
        msg.parse_meta(Envelope(type=msg.FIT, job="j", worker="a", meta={"surprise": 1}), msg.FIT)
    with pytest.raises(ProtocolError, match="meta.num_classes"):
        msg.parse_meta(Envelope(type=msg.FIT, job="j", worker="a", meta={"num_classes": 1}), msg.FIT)
