"""The Strategy ABC: sampling by fraction_fit/min_clients, evaluation hooks, user subclasses."""

from __future__ import annotations

import numpy as np
import pytest

from fedmist.strategy import FedAvg, FitResult, InsufficientWorkersError, Strategy
from fedmist.strategy.types import Weights

WORKERS = [f"edge-{i}" for i in range(10)]
GLOBAL: Weights = {"w": np.zeros(2, np.float32)}


def test_sampling_is_deterministic_for_a_seed_and_ignores_input_order() -> None:
    strategy = FedAvg(fraction_fit=0.5)
    first = strategy.configure_fit(1, GLOBAL, WORKERS, np.random.default_rng(7)).workers
    again = strategy.configure_fit(1, GLOBAL, WORKERS, np.random.default_rng(7)).workers
    shuffled = strategy.configure_fit(1, GLOBAL, WORKERS[::-1], np.random.default_rng(7)).workers
    assert first == again == shuffled
    assert len(first) == 5 and len(set(first)) == 5 and set(first) <= set(WORKERS)
    assert first == sorted(first)


def test_sampling_varies_across_rounds_with_one_generator() -> None:
    strategy = FedAvg(fraction_fit=0.3)
    rng = np.random.default_rng(0)
    picks = {tuple(strategy.sample(WORKERS, rng)) for _ in range(20)}
    assert len(picks) > 1


@pytest.mark.parametrize(
    ("fraction", "min_clients", "expected"),
    [(1.0, 1, 10), (0.5, 1, 5), (0.3, 1, 3), (0.25, 1, 3), (0.1, 3, 3), (0.01, 1, 1), (0.5, 10, 10)],
)
def test_number_of_sampled_workers(fraction: float, min_clients: int, expected: int) -> None:
    strategy = FedAvg(fraction_fit=fraction, min_clients=min_clients)
    assert strategy.num_fit_workers(10) == expected
    assert len(strategy.sample(WORKERS, np.random.default_rng(1))) == expected


def test_too_few_workers_raise_insufficient_workers() -> None:
    strategy = FedAvg(min_clients=3)
    with pytest.raises(InsufficientWorkersError, match="2 worker\\(s\\) available, min_clients is 3"):
        strategy.configure_fit(1, GLOBAL, ["a", "b", "b"], np.random.default_rng(0))
    assert issubclass(InsufficientWorkersError, ValueError)


def test_fit_config_and_evaluate_defaults() -> None:
    strategy = FedAvg()
    instructions = strategy.configure_fit(9, GLOBAL, ["b", "a"], np.random.default_rng(0))
    assert instructions.workers == ["a", "b"] and instructions.config == {"round": 9}
    assert strategy.configure_evaluate(9, GLOBAL, ["a"], np.random.default_rng(0)) is None
    assert strategy.evaluate(9, GLOBAL) is None


def test_evaluate_fn_is_called_with_the_global_model() -> None:
    seen: list[tuple[int, float]] = []

    def evaluate(round_: int, weights: Weights) -> dict[str, float]:
        seen.append((round_, float(weights["w"].sum())))
        return {"accuracy": np.float32(0.5)}  # type: ignore[dict-item]

    strategy = FedAvg(evaluate_fn=evaluate)
    assert strategy.evaluate(2, {"w": np.ones(2, np.float32)}) == {"accuracy": 0.5}
    assert seen == [(2, 2.0)]


@pytest.mark.parametrize(("kwargs", "field"), [({"fraction_fit": 0.0}, "fraction_fit"),
                                               ({"fraction_fit": 1.5}, "fraction_fit"),
                                               ({"min_clients": 0}, "min_clients")])
def test_invalid_sampling_parameters(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FedAvg(**kwargs)


class LastWins(Strategy):
    """A minimal user strategy: the new global model is the last result received."""

    def _begin_round(self, round: int, global_weights: Weights) -> None:
        self.last: Weights | None = None

    def _accumulate(self, result: FitResult) -> None:
        self.last = result.weights

    def _finish_round(self, round: int, global_weights: Weights) -> Weights:
        assert self.last is not None
        return self.last


def test_user_subclass_gets_validation_and_batch_path() -> None:
    strategy = LastWins()
    results = [FitResult("a", {"w": np.ones(2, np.float32)}, 1), FitResult("b", {"w": np.full(2, 2, np.float32)}, 1)]
    np.testing.assert_array_equal(strategy.aggregate_fit(1, results, GLOBAL)["w"], [2, 2])
    strategy.begin_round(2, GLOBAL)
    with pytest.raises(ValueError, match="worker x: weights do not match"):
        strategy.accumulate(FitResult("x", {"v": np.ones(2, np.float32)}, 1))
    assert strategy.state_dict() == {}
    with pytest.raises(ValueError, match="has no state"):
        strategy.load_state_dict({"m/w": np.zeros(1)})
    with pytest.raises(TypeError):
        Strategy()  # type: ignore[abstract]
