"""The round engine's own checkpoint hooks carry the sampler: an aggregator killed after round 4 and resumed from
its checkpoint (save_round_checkpoint / resume_rounds, the functions the engine calls) samples rounds 5-10
exactly as a run that never stopped."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from fedmist.models.local_train import state_to_numpy
from fedmist.strategy import FedAvg
from fedmist.strategy.sampling import ClientSampler
from fedmist.wire.arrays import encode_weights
from fedmist.worker.checkpoint import CheckpointStore
from fedmist.worker.rounds.aggregator import resume_rounds, save_round_checkpoint

TRAINERS = [f"edge{i}" for i in range(1, 21)]


def _job() -> SimpleNamespace:
    model = torch.nn.Linear(3, 2)
    return SimpleNamespace(model=model, global_bytes=encode_weights(state_to_numpy(model)),
                           strategy=FedAvg(fraction_fit=0.25), history=[], rounds=10,
                           reporter=SimpleNamespace(update=lambda **kw: None))


def _draw(sampler: ClientSampler, job: SimpleNamespace, rounds: range) -> list[list[str]]:
    weights = {"w": np.zeros(1, dtype=np.float32)}
    return [sampler.configure(job.strategy, r, weights, TRAINERS).workers for r in rounds]


def test_a_resumed_aggregator_draws_the_same_rounds(tmp_path):
    expected = _draw(ClientSampler(seed=9), _job(), range(1, 11))

    job, sampler = _job(), ClientSampler(seed=9)
    before = _draw(sampler, job, range(1, 5))
    book = SimpleNamespace(metrics={})
    store = CheckpointStore(tmp_path, "spec", "rounds")
    assert save_round_checkpoint(store, job, book, sampler, {"round": 4, "accuracy": None})
    del job, sampler  # the aggregator process dies here

    job, sampler = _job(), ClientSampler(seed=9)
    first, pending = resume_rounds(CheckpointStore(tmp_path, "spec", "rounds"), job, SimpleNamespace(metrics={}),
                                   sampler)
    assert (first, pending["round"]) == (5, 4)
    assert before + _draw(sampler, job, range(first, 11)) == expected
    assert sampler.last_round == 10
