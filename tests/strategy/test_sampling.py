"""Client sampling: Flower's knobs, per-round seeded draws, and a resume that continues the exact sequence."""

from __future__ import annotations

import numpy as np
import pytest

from fedmist.spec.params import parse_params
from fedmist.strategy import FedAvg, InsufficientWorkersError, build_strategy
from fedmist.strategy.sampling import ClientSampler, round_generator, sample_size
from fedmist.worker.checkpoint import CheckpointStore

CLIENTS = [f"edge{i}" for i in range(1, 21)]
GLOBAL = {"w": np.zeros(2, dtype=np.float32)}


def _run(sampler: ClientSampler, strategy: FedAvg, rounds: range) -> list[list[str]]:
    return [sampler.configure(strategy, r, GLOBAL, CLIENTS).workers for r in rounds]


@pytest.mark.parametrize(("available", "fraction", "min_fit", "expected"),
                         [(20, 0.25, 1, 5), (10, 0.3, 1, 3), (100, 0.01, 1, 1), (10_000, 0.01, 1, 100),
                          (20, 0.1, 5, 5), (3, 0.5, 5, 3)])
def test_sample_size_is_flowers_rule(available, fraction, min_fit, expected):
    assert sample_size(available, fraction, min_fit) == expected


def test_twenty_clients_five_per_round_are_seeded_distinct_and_vary():
    strategy = FedAvg(fraction_fit=0.25)
    rounds = _run(ClientSampler(seed=3), strategy, range(1, 11))
    assert all(len(s) == 5 == len(set(s)) and s == sorted(s) for s in rounds)
    assert rounds == _run(ClientSampler(seed=3), strategy, range(1, 11))  # seeded: the same again
    assert rounds != _run(ClientSampler(seed=4), strategy, range(1, 11))
    assert len({tuple(s) for s in rounds}) > 5  # not one fixed set
    assert set().union(*rounds) > set(CLIENTS[:10])  # over 10 rounds most clients get their turn


def test_a_round_depends_on_seed_round_and_pool_only():
    strategy = FedAvg(fraction_fit=0.25)
    pick = strategy.sample(CLIENTS[::-1], round_generator(0, 7))
    assert pick == strategy.sample(CLIENTS, round_generator(0, 7))  # not on the pool's order
    assert pick == ClientSampler(seed=0).configure(strategy, 7, GLOBAL, CLIENTS).workers  # not on earlier rounds


def test_resume_from_a_checkpoint_continues_the_exact_sequence(tmp_path):
    """Rounds 1-4, a checkpoint (the aggregator's CheckpointStore, header JSON), a fresh process's sampler
    restored from it, rounds 5-10: the same selections, and the same chain digest, as a run never stopped."""
    strategy = FedAvg(fraction_fit=0.25)
    whole = ClientSampler(seed=11)
    expected = _run(whole, strategy, range(1, 11))

    first = ClientSampler(seed=11)
    before = _run(first, strategy, range(1, 5))
    store = CheckpointStore(tmp_path, "spec", "rounds")
    assert store.try_save(4, {"global/w": GLOBAL["w"]}, {"round": 4, "sampler": first.state_dict()})
    del first

    resumed = ClientSampler(seed=11)
    resumed.load_state_dict(CheckpointStore(tmp_path, "spec", "rounds").load().meta["sampler"])
    after = _run(resumed, strategy, range(5, 11))
    assert before + after == expected
    assert resumed.digest == whole.digest and resumed.last_selected == expected[-1]
    with pytest.raises(ValueError, match="round 4 sampled after round 10"):
        resumed.configure(strategy, 4, GLOBAL, CLIENTS)
    with pytest.raises(ValueError, match="seed is 12"):
        ClientSampler(seed=12).load_state_dict(resumed.state_dict())


def test_flower_names_come_from_the_job_env():
    params = parse_params({"aggregation_algorithm": "fedprox", "FRACTION_FIT": "0.1", "min_fit_clients": "3",
                           "Min_Available_Clients": "8", "min_clients": "2"})
    strategy = build_strategy("fedprox", params.model_dump(exclude={"extra"}))
    assert (strategy.fraction_fit, strategy.min_fit_clients, strategy.min_available_clients) == (0.1, 3, 8)
    assert len(strategy.sample(CLIENTS, round_generator(0, 1))) == 3  # ceil(0.1 * 20) = 2 < min_fit_clients
    with pytest.raises(InsufficientWorkersError, match="min_available_clients is 8"):
        strategy.sample(CLIENTS[:7], round_generator(0, 1))
    defaults = build_strategy("fedavg", {"min_clients": "4"})
    assert (defaults.min_fit_clients, defaults.min_available_clients) == (4, 4)
    with pytest.raises(Exception, match="min_fit_clients: must be an integer >= 1"):
        parse_params({"min_fit_clients": "0"})
