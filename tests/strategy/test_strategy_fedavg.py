"""FedAvg / FedProx: exact values, streaming == batch, bounded memory, and the round-level error paths."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from fedmist.strategy import STRATEGIES, FedAvg, FedProx, FitResult, proximal_gradient, proximal_term
from fedmist.strategy.types import Weights


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def model(w: np.ndarray, count: int = 0) -> Weights:
    return {"w": w, "bn.num_batches_tracked": np.array(count, dtype=np.int64)}


GLOBAL = model(f32(0, 0), 0)


def test_fedavg_sample_weighted_mean() -> None:
    results = [FitResult("a", model(f32(1, 2), 10), 1), FitResult("b", model(f32(3, 4), 30), 3)]
    out = FedAvg().aggregate_fit(1, results, GLOBAL)
    assert list(out) == ["w", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(out["w"], f32(2.5, 3.5))
    assert out["w"].dtype == np.float32
    assert int(out["bn.num_batches_tracked"]) == 10  # integer buffer: first result, not averaged (25)
    np.testing.assert_array_equal(GLOBAL["w"], f32(0, 0))  # global model untouched


def test_output_follows_global_dtype_and_order() -> None:
    global_weights = {"b": np.zeros(1, np.float64), "a": np.zeros(2, np.float32)}
    client = {"a": f32(2, 4), "b": np.array([1.0], np.float32)}
    out = FedAvg().aggregate_fit(1, [FitResult("x", client, 2)], global_weights)
    assert list(out) == ["b", "a"]
    assert out["b"].dtype == np.float64 and out["a"].dtype == np.float32


def _random_results(seed: int, n: int = 5) -> tuple[Weights, list[FitResult]]:
    rng = np.random.default_rng(seed)
    shapes = {"conv.weight": (4, 3, 3), "conv.bias": (4,), "fc.weight": (2, 36)}

    def draw(count: int) -> Weights:
        w: Weights = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
        w["bn.num_batches_tracked"] = np.array(count, dtype=np.int64)
        return w

    results = [FitResult(f"w{i}", draw(100 + i), int(rng.integers(1, 50))) for i in range(n)]
    return draw(0), results


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_streaming_equals_batch(name: str) -> None:
    global_weights, results = _random_results(0)
    batch_strategy, stream_strategy = STRATEGIES[name](), STRATEGIES[name]()
    for round_ in (1, 2):  # two rounds: server-optimizer state must evolve identically too
        batch = batch_strategy.aggregate_fit(round_, results, global_weights)
        stream_strategy.begin_round(round_, global_weights)
        for result in results:
            stream_strategy.accumulate(result)
        stream = stream_strategy.finish_round()
        assert list(stream) == list(global_weights)
        for key in global_weights:
            np.testing.assert_array_equal(stream[key], batch[key])
            assert stream[key].dtype == global_weights[key].dtype
        global_weights = batch


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad"])
def test_streaming_strategies_do_not_keep_updates(name: str) -> None:
    global_weights, results = _random_results(1, n=3)
    strategy = STRATEGIES[name]()
    strategy.begin_round(1, global_weights)
    refs = []
    for result in results:
        strategy.accumulate(result)
        refs.append(weakref.ref(result.weights["conv.weight"]))
    del result, results
    gc.collect()
    assert all(ref() is None for ref in refs), "an update array is still referenced after accumulate()"
    strategy.finish_round()


def test_bad_update_is_rejected_and_round_continues() -> None:
    strategy = FedAvg()
    strategy.begin_round(3, GLOBAL)
    strategy.accumulate(FitResult("a", model(f32(1, 2)), 1))
    with pytest.raises(ValueError, match=r"worker bad: w has shape \(3,\)"):
        strategy.accumulate(FitResult("bad", model(f32(1, 2, 3)), 100))
    with pytest.raises(ValueError, match="worker a: second result in round 3"):
        strategy.accumulate(FitResult("a", model(f32(100, 100)), 100))
    strategy.accumulate(FitResult("b", model(f32(3, 4)), 3))
    assert strategy.accumulated_workers == ["a", "b"]
    np.testing.assert_array_equal(strategy.finish_round()["w"], f32(2.5, 3.5))


def test_round_call_order_and_empty_rounds() -> None:
    strategy = FedAvg()
    with pytest.raises(RuntimeError, match="before begin_round"):
        strategy.accumulate(FitResult("a", GLOBAL, 1))
    with pytest.raises(RuntimeError, match="before begin_round"):
        strategy.finish_round()
    strategy.begin_round(1, GLOBAL)
    with pytest.raises(ValueError, match="round 1: no results"):
        strategy.finish_round()
    with pytest.raises(ValueError, match="round 2: total weight is zero"):
        strategy.aggregate_fit(2, [FitResult("a", GLOBAL, 0)], GLOBAL)
    # a failed round leaves the strategy usable
    out = strategy.aggregate_fit(3, [FitResult("a", model(f32(1, 1)), 2)], GLOBAL)
    np.testing.assert_array_equal(out["w"], f32(1, 1))


def test_begin_round_discards_an_unfinished_round() -> None:
    strategy = FedAvg()
    strategy.begin_round(1, GLOBAL)
    strategy.accumulate(FitResult("a", model(f32(100, 100)), 5))
    strategy.begin_round(1, GLOBAL)
    strategy.accumulate(FitResult("a", model(f32(1, 2)), 1))
    np.testing.assert_array_equal(strategy.finish_round()["w"], f32(1, 2))


def test_fit_result_validates_num_samples() -> None:
    with pytest.raises(ValueError, match="worker a: num_samples must be >= 0"):
        FitResult("a", GLOBAL, -1)
    with pytest.raises(ValueError, match="worker a: num_samples must be an integer"):
        FitResult("a", GLOBAL, 1.5)  # type: ignore[arg-type]


def test_fedprox_config_and_aggregation() -> None:
    strategy = FedProx(mu=0.5)
    assert strategy.fit_config(4) == {"round": 4, "mu": 0.5}
    instructions = strategy.configure_fit(4, GLOBAL, ["a", "b"], np.random.default_rng(0))
    assert instructions.config == {"round": 4, "mu": 0.5}
    results = [FitResult("a", model(f32(1, 2)), 1), FitResult("b", model(f32(3, 4)), 3)]
    np.testing.assert_array_equal(strategy.aggregate_fit(1, results, GLOBAL)["w"], f32(2.5, 3.5))
    assert FedProx().mu == 0.01
    with pytest.raises(ValueError, match="mu"):
        FedProx(mu=-1.0)


def test_proximal_term_reference_values() -> None:
    local = {"w": f32(1, 2), "b": f32(-1), "n": np.array(9)}
    global_weights = {"w": f32(0, 0), "b": f32(1), "n": np.array(0)}
    # mu/2 * (1 + 4 + 4) with mu = 0.1 -> 0.45 ; integer buffer n is not a parameter
    assert proximal_term(local, global_weights, 0.1) == pytest.approx(0.45, abs=1e-12)
    grad = proximal_gradient(local, global_weights, 0.1)
    assert list(grad) == ["w", "b"]
    np.testing.assert_allclose(grad["w"], f32(0.1, 0.2), rtol=1e-6)
    np.testing.assert_allclose(grad["b"], f32(-0.2), rtol=1e-6)
