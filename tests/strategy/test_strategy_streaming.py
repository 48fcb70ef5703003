"""Folding updates slice by slice (strategy.streaming): same sums as whole updates, exact rollback."""

from __future__ import annotations

import numpy as np
import pytest

from fedmist.strategy import FedAdam, FedAvg, FedMedian, FedProx, FitResult, Krum
from fedmist.strategy.streaming import FoldClosed

GLOBAL = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(2, np.float32), "n": np.array(0, np.int64)}


def _layout(weights: dict[str, np.ndarray]) -> dict:
    return {k: (v.shape, v.dtype) for k, v in weights.items()}


def _stream(strategy, worker: str, weights: dict[str, np.ndarray], samples: int, piece: int = 2):
    """Fold ``weights`` in slices of ``piece`` values, in the order of the dict (as a payload would)."""
    fold = strategy.open_fold(worker, samples, _layout(weights))
    for key, value in weights.items():
        flat = value.reshape(-1)
        for start in range(0, flat.size, piece):
            fold.fold(key, start, flat[start:start + piece])
    return fold


def _update(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(2, 3)).astype(np.float32), "b": rng.normal(size=2).astype(np.float32),
            "n": np.array(seed, np.int64)}


def test_streamed_fedavg_equals_the_hand_computed_weighted_mean() -> None:
    strategy = FedAvg()
    strategy.begin_round(1, GLOBAL)
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], np.float32),
         "n": np.array(7, np.int64)}
    b = {"w": np.full((2, 3), 4, np.float32), "b": np.array([5, 6], np.float32), "n": np.array(9, np.int64)}
    strategy.commit_fold(_stream(strategy, "a", a, 1))
    strategy.commit_fold(_stream(strategy, "b", b, 3, piece=4))
    out = strategy.finish_round()
    # (1 * a + 3 * b) / 4, exact in float32
    np.testing.assert_array_equal(out["w"], [[3, 3.25, 3.5], [3.75, 4, 4.25]])
    np.testing.assert_array_equal(out["b"], [4, 5])
    assert out["n"] == 7 and out["n"].dtype == np.int64  # counters from the first accepted update


@pytest.mark.parametrize("cls", [FedAvg, FedProx, FedAdam])
def test_streamed_aggregate_is_bitwise_the_whole_update_aggregate(cls) -> None:
    updates = [(_update(s), n) for s, n in ((1, 10), (2, 3), (3, 7))]
    whole = cls().aggregate_fit(1, [FitResult(f"e{i}", w, n) for i, (w, n) in enumerate(updates)], GLOBAL)
    strategy = cls()
    strategy.begin_round(1, GLOBAL)
    for i, (weights, n) in enumerate(updates):
        strategy.commit_fold(_stream(strategy, f"e{i}", weights, n, piece=i + 1))
    streamed = strategy.finish_round()
    for key in GLOBAL:
        np.testing.assert_array_equal(streamed[key], whole[key])


@pytest.mark.parametrize("accepted_before", [0, 2])
def test_a_rolled_back_update_leaves_the_sum_bit_for_bit_as_without_it(accepted_before: int, tmp_path) -> None:
    """Rejected after most of it was folded (a NaN in its last slice): the round's result is bitwise the result
    without it -- from the undo journal once updates were accepted, by zeroing while none were."""
    updates = [(_update(s), n) for s, n in ((11, 5), (12, 2), (13, 9))]
    bad = {**_update(99), "b": np.array([0.5, np.nan], np.float32)}  # "b" is folded last here
    good_order = updates[:accepted_before] + updates[accepted_before:]
    expected = FedAvg().aggregate_fit(1, [FitResult(f"e{i}", w, n) for i, (w, n) in enumerate(good_order)], GLOBAL)
    strategy = FedAvg()
    strategy.begin_round(1, GLOBAL)
    for i, (weights, n) in enumerate(updates[:accepted_before]):
        strategy.commit_fold(_stream(strategy, f"e{i}", weights, n))
    fold = strategy.open_fold("bad", 1000, _layout(bad), tmp_path)
    with pytest.raises(ValueError, match="tensor 'b' holds non-finite values"):
        for key in ("w", "n", "b"):
            flat = bad[key].reshape(-1)
            for start in range(flat.size):
                fold.fold(key, start, flat[start:start + 1])
    assert fold.folded == 7  # all of w and b[0] went in before the NaN
    assert fold.rollback() == 7 and fold.rollback() == 0
    assert list(tmp_path.iterdir()) == []  # the journal is a temporary file: gone
    with pytest.raises(FoldClosed):
        strategy.commit_fold(fold)
    for i, (weights, n) in enumerate(updates[accepted_before:], start=accepted_before):
        strategy.commit_fold(_stream(strategy, f"e{i}", weights, n))
    out = strategy.finish_round()
    for key in GLOBAL:
        np.testing.assert_array_equal(out[key], expected[key])
    assert out["n"] == updates[0][0]["n"]  # the rejected update's counter was not carried


def test_a_wrong_layout_is_refused_before_anything_is_folded() -> None:
    strategy = FedAvg()
    strategy.begin_round(1, GLOBAL)
    with pytest.raises(ValueError, match=r"worker x: w has shape \(3, 2\), expected \(2, 3\)"):
        strategy.open_fold("x", 1, {**_layout(GLOBAL), "w": ((3, 2), np.dtype(np.float32))})
    with pytest.raises(ValueError, match="worker y: n has dtype float32"):
        strategy.open_fold("y", 1, {**_layout(GLOBAL), "n": ((), np.dtype(np.float32))})
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        strategy.open_fold("z", 1, {k: v for k, v in _layout(GLOBAL).items() if k != "b"})
    assert strategy._sum is not None and strategy._sum._sums == {} and strategy._sum.count == 0


def test_duplicates_and_a_round_closed_under_an_open_fold_never_count() -> None:
    strategy = FedAvg()
    strategy.begin_round(1, GLOBAL)
    strategy.commit_fold(_stream(strategy, "a", _update(1), 1))
    with pytest.raises(ValueError, match="second result in round 1"):
        strategy.open_fold("a", 1, _layout(GLOBAL))
    late = _stream(strategy, "b", {k: np.full_like(v, 100) for k, v in GLOBAL.items()}, 1)
    out = strategy.finish_round()  # the deadline: b is still arriving
    np.testing.assert_array_equal(out["w"], _update(1)["w"])
    with pytest.raises(FoldClosed):
        late.fold("w", 0, np.ones(1, np.float32))
    with pytest.raises(FoldClosed):
        strategy.commit_fold(late)


def test_only_running_sum_strategies_fold_slices() -> None:
    class MetricWeighted(FedAvg):
        def _accumulate(self, result: FitResult) -> None:  # needs the whole result
            super()._accumulate(result)

    assert FedAvg().folds_slices and FedProx().folds_slices and FedAdam().folds_slices
    assert not FedMedian().folds_slices and not Krum().folds_slices and not MetricWeighted().folds_slices
    median = FedMedian()
    median.begin_round(1, GLOBAL)
    with pytest.raises(ValueError, match="FedMedian aggregates whole updates only"):
        median.open_fold("a", 1, _layout(GLOBAL))
