"""FedMedian, TrimmedMean, Krum, MultiKrum through the Strategy interface, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from fedmist.strategy import FedMedian, FitResult, Krum, MultiKrum, TrimmedMean
from fedmist.strategy.types import Weights


def client(name: str, values: list[float], samples: int = 1, count: int = 0) -> FitResult:
    weights = {"w": np.array(values, np.float32), "n": np.array(count, np.int64)}
    return FitResult(name, weights, samples)


def global_like(size: int) -> Weights:
    return {"w": np.zeros(size, np.float32), "n": np.array(0, np.int64)}


def test_fedmedian_of_three() -> None:
    results = [client("a", [1, 10, -1], count=4), client("b", [2, 0, 5], 1000), client("c", [3, 5, 0])]
    out = FedMedian().aggregate_fit(1, results, global_like(3))
    np.testing.assert_array_equal(out["w"], [2, 5, 0])  # unweighted: b's 1000 samples buy nothing
    assert out["w"].dtype == np.float32
    assert int(out["n"]) == 4 and out["n"].dtype == np.int64


def test_trimmed_mean_beta_02_of_five() -> None:
    # floor(0.2*5)=1 trimmed per end: column 0 keeps {2,3,4} -> 3 ; column 1 keeps {0,1,2} -> 1
    values = [(1, -50), (2, 0), (3, 1), (4, 2), (100, 3)]
    results = [client(f"c{i}", list(v), samples=10**i) for i, v in enumerate(values)]
    out = TrimmedMean(beta=0.2).aggregate_fit(1, results, global_like(2))
    np.testing.assert_array_equal(out["w"], [3, 1])


def test_trimmed_mean_validation() -> None:
    with pytest.raises(ValueError, match="beta must be in"):
        TrimmedMean(beta=0.5)
    assert TrimmedMean().beta == 0.2


def line_of_clients() -> list[FitResult]:
    # Krum scores with f=1 (2 nearest neighbours): [5, 2, 2, 5, 19013] -- see test_strategy_aggregate
    return [client(name, [v], samples=s) for name, v, s in
            [("a", 0, 1), ("b", 1, 1), ("c", 2, 2), ("d", 3, 4), ("evil", 100, 1000)]]


def test_krum_picks_an_honest_client_exactly() -> None:
    strategy = Krum(num_malicious=1)
    out = strategy.aggregate_fit(1, line_of_clients(), global_like(1))
    assert strategy.selected == ["b"]  # tie b/c resolved by arrival order
    np.testing.assert_array_equal(out["w"], [1.0])
    assert strategy.scores == {"a": 5.0, "b": 2.0, "c": 2.0, "d": 5.0, "evil": 19013.0}
    assert max(strategy.scores, key=strategy.scores.__getitem__) == "evil"


def test_krum_with_outlier_in_many_dimensions() -> None:
    rng = np.random.default_rng(3)
    honest = [FitResult(f"h{i}", {"w": (1.0 + 0.01 * rng.normal(size=50)).astype(np.float32)}, 10)
              for i in range(5)]
    attacker = FitResult("attacker", {"w": np.full(50, -30.0, np.float32)}, 10**6)
    strategy = Krum(num_malicious=1)
    out = strategy.aggregate_fit(1, [attacker, *honest], {"w": np.zeros(50, np.float32)})
    assert strategy.selected[0].startswith("h")
    assert np.all(np.abs(out["w"] - 1.0) < 0.1)


def test_multikrum_weighted_mean_of_m_best() -> None:
    strategy = MultiKrum(num_malicious=1, m=3)
    out = strategy.aggregate_fit(1, line_of_clients(), global_like(1))
    assert strategy.selected == ["b", "c", "a"]
    np.testing.assert_array_equal(out["w"], [1.25])  # (1*1 + 2*2 + 0*1) / 4


def test_multikrum_default_m_is_n_minus_f() -> None:
    strategy = MultiKrum(num_malicious=1)
    out = strategy.aggregate_fit(1, line_of_clients(), global_like(1))
    assert sorted(strategy.selected) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(out["w"], [2.125])  # (0*1 + 1*1 + 2*2 + 3*4) / 8


def test_multikrum_m_is_clamped_and_validated() -> None:
    strategy = MultiKrum(m=10)
    strategy.aggregate_fit(1, line_of_clients()[:2], global_like(1))
    assert sorted(strategy.selected) == ["a", "b"]
    with pytest.raises(ValueError, match="m must be >= 1"):
        MultiKrum(m=0)
    with pytest.raises(ValueError, match="num_malicious"):
        Krum(num_malicious=-1)


def test_krum_single_result() -> None:
    strategy = Krum(num_malicious=2)
    out = strategy.aggregate_fit(1, [client("solo", [7.0])], global_like(1))
    assert strategy.selected == ["solo"]
    np.testing.assert_array_equal(out["w"], [7.0])


@pytest.mark.parametrize("cls", [FedMedian, TrimmedMean, Krum, MultiKrum])
def test_result_is_a_copy_in_global_dtypes(cls: type) -> None:
    result = FitResult("a", {"w": np.array([1.0, 2.0], np.float64), "n": np.array(2, np.int32)}, 1)
    out = cls().aggregate_fit(1, [result], global_like(2))
    assert out["w"].dtype == np.float32 and out["n"].dtype == np.int64
    assert not np.shares_memory(out["w"], result.weights["w"])
    np.testing.assert_array_equal(out["w"], [1.0, 2.0])
