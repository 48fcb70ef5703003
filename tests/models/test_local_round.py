"""One round's rules, shared by the real trainer and a simulated client (``models/local_round.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from fedmist.models.local_round import local_config, local_rows, round_config
from fedmist.spec.params import parse_params, with_defaults


def _params(role: str = "trainer", **env: str):
    return with_defaults(parse_params(env, role=role))


def test_round_config_sends_the_aggregators_own_settings_under_the_strategys():
    aggregator = _params("aggregator", epochs="3", learning_rate="0.1")
    assert round_config(aggregator, {"mu": 0.5, "learning_rate": 0.2}) == {"epochs": 3, "learning_rate": 0.2,
                                                                             "mu": 0.5}
    assert round_config(_params("aggregator"), {}) == {}


def test_the_trainers_env_wins_then_the_round_then_defaults_and_mu_is_the_strategys():
    config = local_config(_params(epochs="2", mu="0.9"), {"epochs": 5, "batch_size": 8, "mu": 0.1}, "edge1", 2, 3)
    assert (config.epochs, config.batch_size, config.learning_rate, config.mu) == (2, 8, 0.01, 0.1)
    assert (config.round, config.rounds) == (2, 3)
    assert local_config(_params(mu="0.9"), {}, "edge1", 1, 0).mu == 0.9
    assert local_config(_params(), {}, "edge1", 1, 0).rounds == 1
    with pytest.raises(ValueError, match="round config batch_size='x' is not a int"):
        local_config(_params(), {"batch_size": "x"}, "edge1", 1, 1)


def test_the_seed_mixes_the_trainers_seed_round_and_name():
    seeds = {local_config(_params(seed=s), {}, w, r, 3).seed for s in ("0", "1") for w in ("a", "b") for r in (1, 2)}
    assert len(seeds) == 8
    assert local_config(_params(seed="1"), {}, "a", 1, 3).seed == local_config(_params(seed="1"), {}, "a", 1, 9).seed


def test_local_rows_hold_out_the_seeded_validation_split():
    train, val = local_rows(100, _params(validation_split="0.1", seed="4"))
    assert len(val) == 10 and len(train) == 90 and not set(train) & set(val)
    assert np.array_equal(val, local_rows(100, _params(validation_split="0.1", seed="4"))[1])
    assert not np.array_equal(val, local_rows(100, _params(validation_split="0.1", seed="5"))[1])
    train, val = local_rows(100, _params())
    assert np.array_equal(train, np.arange(100)) and len(val) == 0
