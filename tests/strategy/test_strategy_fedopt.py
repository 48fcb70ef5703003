"""FedAdam / FedYogi / FedAdagrad: one step from a known m/v, hand-computed (Reddi et al. 2021, Alg. 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedmist.strategy import FedAdagrad, FedAdam, FedYogi, FitResult
from fedmist.strategy.types import Weights

ETA, B1, B2, TAU = 0.1, 0.9, 0.99, 1e-9
GLOBAL: Weights = {"w": np.array([1.0, -1.0], np.float32), "n": np.array(3, np.int64)}
# (1*[3,-3] + 3*[1,-1]) / 4 = [1.5, -1.5]  ->  delta = [0.5, -0.5]
RESULTS = [
    FitResult("a", {"w": np.array([3.0, -3.0], np.float32), "n": np.array(8, np.int64)}, 1),
    FitResult("b", {"w": np.array([1.0, -1.0], np.float32), "n": np.array(9, np.int64)}, 3),
]
KNOWN_STATE = {"m/w": np.array([0.1, 0.1], np.float32), "v/w": np.array([0.01, 1.0], np.float32)}


def expected_step(m: list[float], v: list[float]) -> list[float]:
    return [x + ETA * mi / (math.sqrt(vi) + TAU) for x, mi, vi in zip([1.0, -1.0], m, v, strict=True)]


# m = 0.9 * 0.1 + 0.1 * (+-0.5) = [0.14, 0.04] for all three
M_NEXT = [0.14, 0.04]
V_NEXT = {
    # Adam: 0.99 v + 0.01 * 0.25
    FedAdam: [0.99 * 0.01 + 0.0025, 0.99 * 1.0 + 0.0025],  # [0.0124, 0.9925]
    # Yogi: v - 0.01 * 0.25 * sign(v - 0.25): first grows (v < delta^2), second shrinks
    FedYogi: [0.01 + 0.0025, 1.0 - 0.0025],  # [0.0125, 0.9975]
    # Adagrad: v + 0.25
    FedAdagrad: [0.26, 1.25],
}


@pytest.mark.parametrize("cls", [FedAdam, FedYogi, FedAdagrad])
def test_one_step_from_known_state(cls: type) -> None:
    strategy = cls()
    strategy.load_state_dict(KNOWN_STATE)
    out = strategy.aggregate_fit(5, RESULTS, GLOBAL)
    np.testing.assert_allclose(out["w"], expected_step(M_NEXT, V_NEXT[cls]), rtol=1e-6)
    assert out["w"].dtype == np.float32
    assert int(out["n"]) == 8  # counters: FedAvg's rule, first result
    state = strategy.state_dict()
    assert sorted(state) == ["m/w", "v/w"]
    np.testing.assert_allclose(state["m/w"], M_NEXT, rtol=1e-6)
    np.testing.assert_allclose(state["v/w"], V_NEXT[cls], rtol=1e-6)


def test_fedadam_first_step_from_fresh_state() -> None:
    # m = 0.1 * 0.5 = 0.05 ; v = 0.99 tau^2 + 0.01 * 0.25 ~= 0.0025 -> step = 0.1 * 0.05 / 0.05 = eta * sign(delta)
    out = FedAdam().aggregate_fit(1, RESULTS, GLOBAL)
    np.testing.assert_allclose(out["w"], [1.1, -1.1], rtol=1e-6)


def test_server_learning_rate_and_betas_are_used() -> None:
    strategy = FedAdam(server_learning_rate=1.0, beta_1=0.5, beta_2=0.75, tau=1.0)
    strategy.load_state_dict({"m/w": np.array([2.0, 2.0], np.float32), "v/w": np.array([4.0, 4.0], np.float32)})
    # delta [0.5,-0.5]: m = [1.25, 0.75] ; v = 3 + 0.0625 = 3.0625 -> sqrt 1.75 ; step = m / 2.75
    out = strategy.aggregate_fit(1, RESULTS, GLOBAL)
    np.testing.assert_allclose(out["w"], [1.0 + 1.25 / 2.75, -1.0 + 0.75 / 2.75], rtol=1e-6)


@pytest.mark.parametrize("cls", [FedAdam, FedYogi, FedAdagrad])
def test_checkpoint_round_trip_continues_identically(cls: type) -> None:
    running = cls()
    after_one = running.aggregate_fit(1, RESULTS, GLOBAL)
    restored = cls()
    restored.load_state_dict(running.state_dict())
    np.testing.assert_array_equal(
        running.aggregate_fit(2, RESULTS, after_one)["w"], restored.aggregate_fit(2, RESULTS, after_one)["w"]
    )


def test_state_dict_is_a_copy() -> None:
    strategy = FedAdam()
    strategy.aggregate_fit(1, RESULTS, GLOBAL)
    state = strategy.state_dict()
    state["m/w"][:] = 123.0
    assert not np.any(strategy.state_dict()["m/w"] == 123.0)


def test_bad_state_is_rejected() -> None:
    with pytest.raises(ValueError, match="unexpected state key 'x/w'"):
        FedAdam().load_state_dict({"x/w": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="dtype int64"):
        FedAdam().load_state_dict({"m/w": np.zeros(2, np.int64)})
    strategy = FedYogi()
    strategy.load_state_dict({"m/w": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"optimizer state m/w has shape \(3,\), model has \(2,\)"):
        strategy.aggregate_fit(1, RESULTS, GLOBAL)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"server_learning_rate": 0.0}, "server_learning_rate"), ({"beta_1": 1.0}, "beta_1"),
     ({"beta_2": -0.1}, "beta_2"), ({"tau": 0.0}, "tau")],
)
def test_invalid_hyperparameters(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FedAdam(**kwargs)
