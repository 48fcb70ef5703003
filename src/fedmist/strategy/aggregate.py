"""Pure aggregation helpers over lists of :data:`Weights` (no state, no I/O, numpy only).

Every strategy is a thin policy around these functions, which is what lets each one be tested against
hand-computed values. Shared conventions, decided once here:

* **Floating entries** are aggregated in at least float32 (float16 models are summed in float32 so large
  sample counts cannot overflow; float64 stays float64) and cast back to the reference dtype.
* **Non-floating entries** (integer counters such as BatchNorm's ``num_batches_tracked``, boolean masks) are
  never averaged -- a mean of counters or masks is meaningless and would change the dtype. The aggregate takes
  them from the *first* contributing result (arrival order in streaming; the selected client for Krum).
* The *reference* model (the global model in a round, else the first result) fixes the keys, their order,
  shapes and dtypes; a result that does not match is rejected by :func:`check_compatible` with its name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from fedmist.strategy.types import FitResult, Weights


def is_floating(array: np.ndarray) -> bool:
    """True for entries that are aggregated (floating point); False for counters and masks."""
    return bool(np.issubdtype(array.dtype, np.floating))


#: Name endings of floating entries that are statistics of the data, not parameters: BatchNorm's running mean and
#: variance. Averaged as FedAvg does, never stepped by a server optimizer (a step can drive a variance negative).
STATISTIC_SUFFIXES = (".running_mean", ".running_var")


def is_statistic(key: str) -> bool:
    """True for BatchNorm running statistics (``STATISTIC_SUFFIXES``)."""
    return key.endswith(STATISTIC_SUFFIXES)


def accumulator_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype sums are kept in: at least float32, so float16 models neither overflow nor lose mass."""
    return np.result_type(dtype, np.float32)


#: What an update's header says about it before its values arrive: name -> (shape, dtype).
Layout = dict[str, tuple[tuple[int, ...], np.dtype]]


def check_layout(layout: Layout, reference: Weights, who: str) -> None:
    """Raise ``ValueError`` naming ``who`` when ``layout`` differs from ``reference`` in keys, shapes or kind.

    The one rule for both aggregation paths: a whole update (:func:`check_compatible`) and a streamed one,
    judged from its safetensors header before any value is folded (``fedmist.worker.rounds.update_stream``).
    """
    missing = [k for k in reference if k not in layout]
    unexpected = [k for k in layout if k not in reference]
    if missing or unexpected:
        raise ValueError(
            f"{who}: weights do not match the global model (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    for key, ref in reference.items():
        shape, dtype = layout[key]
        if tuple(shape) != ref.shape:
            raise ValueError(f"{who}: {key} has shape {tuple(shape)}, expected {ref.shape}")
        if bool(np.issubdtype(dtype, np.floating)) != is_floating(ref):
            raise ValueError(f"{who}: {key} has dtype {dtype}, expected {ref.dtype}")


def check_compatible(weights: Weights, reference: Weights, who: str) -> None:
    """Raise ``ValueError`` naming ``who`` when ``weights`` differs from ``reference`` in keys, shapes or kind.

    Finite-value checks are the wire layer's job (it already reads every byte); this guards the strategy's own
    arithmetic from a silent broadcast or a key mix-up.
    """
    for key, arr in weights.items():
        if key in reference and not isinstance(arr, np.ndarray):
            raise ValueError(f"{who}: {key} is {type(arr).__name__}, expected a numpy array")
    check_layout({k: (np.shape(a), np.asarray(a).dtype) for k, a in weights.items()}, reference, who)


class WeightedSum:
    """Running ``sum_i n_i * x_i`` over a round's results: one model-sized buffer, whatever the client count.

    This is what makes FedAvg-style aggregation memory-bounded: each update is folded in as it arrives and can
    be freed at once. :meth:`finish` divides in place and hands the buffer out, so it is single-use.
    """

    def __init__(self, reference: Weights) -> None:
        self._reference = reference
        self._sums: dict[str, np.ndarray] = {}
        self._carried: dict[str, np.ndarray] = {}
        self.total_weight = 0.0
        self.count = 0
        self._finished = False

    def add(self, weights: Weights, weight: float) -> None:
        """Fold ``weight * weights`` into the sum (temporary memory: one tensor, not one model)."""
        if self._finished:
            raise RuntimeError("WeightedSum.add after finish()")
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"aggregation weight must be finite and >= 0, got {weight}")
        first = self.count == 0
        for key, ref in self._reference.items():
            arr = weights[key]
            if not is_floating(ref):
                if first:
                    self._carried[key] = np.array(arr, dtype=ref.dtype, copy=True)
                continue
            scaled = np.multiply(arr, weight, dtype=accumulator_dtype(ref.dtype))
            if first:
                self._sums[key] = scaled
            else:
                self.sum_of(key)[...] += scaled
        self.total_weight += float(weight)
        self.count += 1

    def sum_of(self, key: str) -> np.ndarray:
        """The running sum of floating entry ``key``, created as zeros on first use.

        Zeros from ``np.zeros`` are mapped lazily by the OS, so a sum costs memory only as it is written --
        which lets a streamed update (``strategy.streaming``) fill it slice by slice.
        """
        total = self._sums.get(key)
        if total is None:
            ref = self._reference[key]
            total = self._sums[key] = np.zeros(ref.shape, dtype=accumulator_dtype(ref.dtype))
        return total

    def carries(self, key: str) -> bool:
        """True once a non-floating entry has been taken from an accepted result."""
        return key in self._carried

    def commit(self, weight: float, carried: Weights) -> None:
        """Book a result folded slice by slice (:class:`~fedmist.strategy.streaming.PartialFold`)."""
        if self._finished:
            raise RuntimeError("WeightedSum.commit after finish()")
        for key, value in carried.items():
            self._carried.setdefault(key, value)
        self.total_weight += float(weight)
        self.count += 1

    def finish(self) -> Weights:
        """Return ``sum / total_weight`` in the reference's keys, order and dtypes."""
        if self.count == 0:
            raise ValueError("no results to aggregate")
        if self.total_weight <= 0:
            raise ValueError("total weight is zero: every result reported 0 samples")
        self._finished = True
        out: Weights = {}
        for key, ref in self._reference.items():
            if key in self._carried:
                out[key] = self._carried[key]
                continue
            total = self.sum_of(key)
            np.divide(total, self.total_weight, out=total)
            out[key] = total.astype(ref.dtype, copy=False)
        self._sums = {}
        return out


def _require_nonempty(weights_list: Sequence[Weights]) -> Weights:
    if not weights_list:
        raise ValueError("no results to aggregate")
    reference = weights_list[0]
    for i, weights in enumerate(weights_list[1:], start=1):
        check_compatible(weights, reference, f"result {i}")
    return reference


def weighted_mean(weights_list: Sequence[Weights], num_samples: Sequence[float]) -> Weights:
    """Sample-weighted mean ``sum_i n_i x_i / sum_i n_i`` (FedAvg); non-floating entries from the first."""
    if len(weights_list) != len(num_samples):
        raise ValueError(f"{len(weights_list)} weights but {len(num_samples)} sample counts")
    reference = _require_nonempty(weights_list)
    acc = WeightedSum(reference)
    for weights, n in zip(weights_list, num_samples, strict=True):
        acc.add(weights, float(n))
    return acc.finish()


def _coordinatewise(weights_list: Sequence[Weights], reduce: Callable[[np.ndarray], np.ndarray]) -> Weights:
    """Apply ``reduce`` over axis 0 of each floating entry stacked across results."""
    reference = _require_nonempty(weights_list)
    out: Weights = {}
    for key, ref in reference.items():
        if not is_floating(ref):
            out[key] = ref.copy()
            continue
        stacked = np.stack([w[key] for w in weights_list]).astype(accumulator_dtype(ref.dtype), copy=False)
        out[key] = np.asarray(reduce(stacked)).astype(ref.dtype, copy=False)
    return out


def coordinate_median(weights_list: Sequence[Weights]) -> Weights:
    """Coordinate-wise median (unweighted: a robust statistic must not let one client buy weight)."""
    return _coordinatewise(weights_list, lambda stacked: np.median(stacked, axis=0))


def trim_count(n: int, beta: float) -> int:
    """How many values :func:`trimmed_mean` drops from *each* end: ``floor(beta * n)``."""
    return int(math.floor(beta * n + 1e-9))  # tolerance: 0.29 * 100 must trim 29, not 28


def trimmed_mean(weights_list: Sequence[Weights], beta: float) -> Weights:
    """Coordinate-wise mean after dropping the ``floor(beta*n)`` lowest and highest values (unweighted)."""
    if not 0 <= beta < 0.5:
        raise ValueError(f"beta must be in [0, 0.5), got {beta}")
    n = len(weights_list)
    k = trim_count(n, beta)
    if n - 2 * k < 1:
        raise ValueError(f"trimming {k} from each end of {n} results leaves nothing to average")
    return _coordinatewise(weights_list, lambda stacked: np.sort(stacked, axis=0)[k : n - k].mean(axis=0))


def pairwise_sq_distances(weights_list: Sequence[Weights]) -> np.ndarray:
    """``D[i, j] = ||x_i - x_j||^2`` over all floating entries, in float64 (one entry stacked at a time)."""
    reference = _require_nonempty(weights_list)
    n = len(weights_list)
    dist = np.zeros((n, n), dtype=np.float64)
    for key, ref in reference.items():
        if not is_floating(ref):
            continue
        stacked = np.stack([np.asarray(w[key], dtype=np.float64).ravel() for w in weights_list])
        for i in range(n):
            dist[i] += np.square(stacked - stacked[i]).sum(axis=1)
    return dist


def krum_neighbours(n: int, num_malicious: int) -> int:
    """Neighbours counted in a Krum score: ``n - f - 2``, clamped to ``[1, n - 1]``.

    Krum's Byzantine guarantee needs ``n > 2f + 2``; below that the score still ranks clients by closeness
    (clamped like Flower's), so a round that lost workers to a deadline degrades instead of failing.
    """
    return max(0, min(max(1, n - num_malicious - 2), n - 1))


def krum_scores(weights_list: Sequence[Weights], num_malicious: int) -> np.ndarray:
    """Krum score per result: sum of squared distances to its ``n - f - 2`` nearest other results."""
    if num_malicious < 0:
        raise ValueError(f"num_malicious must be >= 0, got {num_malicious}")
    dist = pairwise_sq_distances(weights_list)
    k = krum_neighbours(len(weights_list), num_malicious)
    np.fill_diagonal(dist, np.inf)
    return np.asarray(np.sort(dist, axis=1)[:, :k].sum(axis=1), dtype=np.float64)


def krum_select(weights_list: Sequence[Weights], num_malicious: int, m: int) -> list[int]:
    """Indices of the ``m`` lowest Krum scores, best first (ties: earlier result first)."""
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    scores = krum_scores(weights_list, num_malicious)
    return [int(i) for i in np.argsort(scores, kind="stable")[:m]]


def weighted_metrics(results: Sequence[FitResult]) -> dict[str, float]:
    """Sample-weighted mean of each metric over the results that report it (plain mean if all weigh 0)."""
    names: dict[str, None] = {}
    for result in results:
        names.update(dict.fromkeys(result.metrics))
    out: dict[str, float] = {}
    for name in names:
        pairs = [(float(r.metrics[name]), r.num_samples) for r in results if name in r.metrics]
        total = sum(n for _, n in pairs)
        if total > 0:
            out[name] = sum(v * n for v, n in pairs) / total
        else:
            out[name] = sum(v for v, _ in pairs) / len(pairs)
    return out
