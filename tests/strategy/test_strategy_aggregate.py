"""Exact-value tests of the pure helpers in fedmist.strategy.aggregate (values computed by hand here)."""

from __future__ import annotations

import numpy as np
import pytest

from fedmist.strategy.aggregate import (
    check_compatible,
    coordinate_median,
    krum_neighbours,
    krum_scores,
    krum_select,
    pairwise_sq_distances,
    trim_count,
    trimmed_mean,
    weighted_mean,
    weighted_metrics,
)
from fedmist.strategy.types import FitResult


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_weighted_mean_two_clients() -> None:
    # (1*[1,2] + 3*[3,4]) / 4 = [10, 14] / 4
    out = weighted_mean([{"w": f32(1, 2)}, {"w": f32(3, 4)}], [1, 3])
    np.testing.assert_array_equal(out["w"], f32(2.5, 3.5))
    assert out["w"].dtype == np.float32


def test_weighted_mean_keeps_integer_buffer_from_first_result() -> None:
    a = {"w": f32(0.0), "bn.num_batches_tracked": np.array(5, dtype=np.int64)}
    b = {"w": f32(4.0), "bn.num_batches_tracked": np.array(7, dtype=np.int64)}
    out = weighted_mean([a, b], [1, 1])
    assert list(out) == ["w", "bn.num_batches_tracked"]
    assert out["bn.num_batches_tracked"].dtype == np.int64
    assert int(out["bn.num_batches_tracked"]) == 5
    np.testing.assert_array_equal(out["w"], f32(2.0))


def test_weighted_mean_float16_sums_in_float32() -> None:
    # 60000 * 100 overflows float16 (max 65504); the sum must not.
    a = {"w": np.array([100.0], dtype=np.float16)}
    b = {"w": np.array([200.0], dtype=np.float16)}
    out = weighted_mean([a, b], [60000, 60000])
    assert out["w"].dtype == np.float16
    assert float(out["w"][0]) == 150.0


def test_weighted_mean_errors() -> None:
    with pytest.raises(ValueError, match="2 weights but 1 sample counts"):
        weighted_mean([{"w": f32(1)}, {"w": f32(2)}], [1])
    with pytest.raises(ValueError, match="no results"):
        weighted_mean([], [])
    with pytest.raises(ValueError, match="total weight is zero"):
        weighted_mean([{"w": f32(1)}], [0])


def test_coordinate_median_of_three() -> None:
    clients = [{"w": f32(1, 10, -1)}, {"w": f32(2, 0, 5)}, {"w": f32(3, 5, 0)}]
    np.testing.assert_array_equal(coordinate_median(clients)["w"], f32(2, 5, 0))


def test_coordinate_median_of_four_is_mean_of_middle_two() -> None:
    clients = [{"w": f32(v)} for v in (1, 2, 3, 10)]
    np.testing.assert_array_equal(coordinate_median(clients)["w"], f32(2.5))


def test_trimmed_mean_beta_02_of_five() -> None:
    # floor(0.2 * 5) = 1 from each end: coordinate 0 keeps {2,3,4}, coordinate 1 keeps {0,1,2}.
    columns = [(1, -50), (2, 0), (3, 1), (4, 2), (100, 3)]
    clients = [{"w": f32(a, b)} for a, b in columns]
    np.testing.assert_array_equal(trimmed_mean(clients, 0.2)["w"], f32(3, 1))


def test_trimmed_mean_beta_zero_is_plain_mean_and_bad_beta_fails() -> None:
    clients = [{"w": f32(v)} for v in (1, 2, 6)]
    np.testing.assert_array_equal(trimmed_mean(clients, 0.0)["w"], f32(3))
    with pytest.raises(ValueError, match="beta"):
        trimmed_mean(clients, 0.5)


def test_trim_count_is_robust_to_float_products() -> None:
    assert trim_count(5, 0.2) == 1
    assert trim_count(100, 0.29) == 29  # 0.29 * 100 == 28.999999999999996
    assert trim_count(4, 0.2) == 0


def test_pairwise_sq_distances_over_several_entries() -> None:
    a = {"x": f32(0, 0), "y": f32(0)}
    b = {"x": f32(3, 4), "y": f32(0)}
    c = {"x": f32(0, 0), "y": f32(2)}
    expected = np.array([[0, 25, 4], [25, 0, 29], [4, 29, 0]], dtype=np.float64)
    np.testing.assert_array_equal(pairwise_sq_distances([a, b, c]), expected)


def test_pairwise_distances_ignore_integer_buffers() -> None:
    a = {"x": f32(0), "n": np.array(1)}
    b = {"x": f32(2), "n": np.array(1000)}
    np.testing.assert_array_equal(pairwise_sq_distances([a, b]), [[0, 4], [4, 0]])


def test_krum_scores_on_a_line() -> None:
    # n=5, f=1 -> 2 nearest neighbours each:
    # 0: 1+4=5 ; 1: 1+1=2 ; 2: 1+1=2 ; 3: 1+4=5 ; 100: 97^2+98^2 = 9409+9604
    clients = [{"w": f32(v)} for v in (0, 1, 2, 3, 100)]
    np.testing.assert_array_equal(krum_scores(clients, 1), [5, 2, 2, 5, 19013])
    assert krum_select(clients, 1, 1) == [1]  # tie 1 vs 2: earlier result wins
    assert krum_select(clients, 1, 3) == [1, 2, 0]


def test_krum_neighbours_clamped() -> None:
    assert krum_neighbours(5, 1) == 2
    assert krum_neighbours(3, 5) == 1
    assert krum_neighbours(2, 0) == 1
    assert krum_neighbours(1, 0) == 0
    np.testing.assert_array_equal(krum_scores([{"w": f32(3)}], 0), [0])


def test_check_compatible_names_the_problem() -> None:
    ref = {"w": f32(1, 2), "n": np.array(1)}
    with pytest.raises(ValueError, match=r"worker a: weights do not match.*missing \['n'\]"):
        check_compatible({"w": f32(1, 2)}, ref, "worker a")
    with pytest.raises(ValueError, match=r"worker b: w has shape \(3,\), expected \(2,\)"):
        check_compatible({"w": f32(1, 2, 3), "n": np.array(1)}, ref, "worker b")
    with pytest.raises(ValueError, match="worker c: w has dtype int64"):
        check_compatible({"w": np.array([1, 2]), "n": np.array(1)}, ref, "worker c")
    with pytest.raises(ValueError, match="worker d: w is list"):
        check_compatible({"w": [1.0, 2.0], "n": np.array(1)}, ref, "worker d")  # type: ignore[dict-item]


def test_weighted_metrics() -> None:
    results = [
        FitResult("a", {}, 1, {"loss": 1.0, "accuracy": 0.5}),
        FitResult("b", {}, 3, {"loss": 3.0}),
    ]
    assert weighted_metrics(results) == {"loss": 2.5, "accuracy": 0.5}
    assert weighted_metrics([FitResult("a", {}, 0, {"loss": 1.0}), FitResult("b", {}, 0, {"loss": 2.0})]) == {
        "loss": 1.5
    }
