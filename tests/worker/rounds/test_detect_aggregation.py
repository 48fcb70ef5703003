"""Aggregating YOLO models in the FedAvg family: exact values for weights, BatchNorm running statistics and
their ``num_batches_tracked`` counters, and every strategy of the family keeping the statistics valid."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fedmist.models.local_train import load_numpy_state, state_to_numpy
from fedmist.strategy import build_strategy
from fedmist.strategy.types import FitResult

FAMILY = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedmedian", "trimmedmean", "krum", "multikrum")


@pytest.fixture(scope="module")
def pristine() -> torch.nn.Module:
    from fedmist.models.yolo import build_yolo
    from fedmist.models.yolo_env import prepare_ultralytics

    prepare_ultralytics()
    return build_yolo("yolov5n.yaml", 3)


@pytest.fixture
def yolo(pristine) -> torch.nn.Module:
    """A fresh yolov5n (3 classes) per test: tests load values into it."""
    return copy.deepcopy(pristine)


def _client(reference: dict[str, np.ndarray], weight: float, mean: float, var: float, count: int) -> dict:
    out = {}
    for key, ref in reference.items():
        if key.endswith("running_mean"):
            out[key] = np.full_like(ref, mean)
        elif key.endswith("running_var"):
            out[key] = np.full_like(ref, var)
        elif key.endswith("num_batches_tracked"):
            out[key] = np.full_like(ref, count)
        else:
            out[key] = np.full_like(ref, weight)
    return out


def test_fedavg_averages_weights_and_batchnorm_statistics_but_not_the_counters(yolo):
    reference = state_to_numpy(yolo)
    a = _client(reference, weight=0.5, mean=1.0, var=2.0, count=5)
    b = _client(reference, weight=1.5, mean=3.0, var=6.0, count=9)
    out = build_strategy("fedavg", {}).aggregate_fit(
        1, [FitResult("edge1", a, 1), FitResult("edge2", b, 3)], reference)
    load_numpy_state(yolo, out)
    bn = yolo.model[0].bn
    assert torch.equal(bn.running_mean, torch.full_like(bn.running_mean, 2.5))  # (1*1 + 3*3) / 4
    assert torch.equal(bn.running_var, torch.full_like(bn.running_var, 5.0))  # (2*1 + 6*3) / 4
    assert bn.num_batches_tracked.dtype == torch.int64 and int(bn.num_batches_tracked) == 5  # the first, not 8
    assert torch.equal(yolo.model[0].conv.weight, torch.full_like(yolo.model[0].conv.weight, 1.25))
    counters = [k for k in out if k.endswith("num_batches_tracked")]
    assert len(counters) > 50 and all(out[k].dtype == np.int64 and int(out[k]) == 5 for k in counters)


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad"])
def test_server_optimizers_average_batchnorm_statistics_instead_of_stepping_them(yolo, name):
    """A server Adam step is about server_learning_rate * sign(delta) at first: stepped 'variances' that fall
    each round go negative and the detector's outputs turn to NaN. They must be averaged like FedAvg's."""
    reference = _client(state_to_numpy(yolo), weight=0.0, mean=0.0, var=0.05, count=1)
    strategy = build_strategy(name, {"server_learning_rate": "0.1"})
    for round_number in (1, 2, 3):
        a = _client(reference, weight=0.1, mean=1.0, var=0.02, count=5)
        b = _client(reference, weight=0.1, mean=3.0, var=0.04, count=9)
        reference = strategy.aggregate_fit(round_number, [FitResult("e1", a, 1), FitResult("e2", b, 1)], reference)
        stats = {k: v for k, v in reference.items() if k.endswith(("running_mean", "running_var"))}
        assert all(np.allclose(v, 2.0) for k, v in stats.items() if k.endswith("running_mean")), name
        assert all(np.allclose(v, 0.03) for k, v in stats.items() if k.endswith("running_var")), name


@pytest.mark.parametrize("name", FAMILY)
def test_every_strategy_of_the_family_gives_a_yolo_model_that_runs(yolo, name):
    reference = state_to_numpy(yolo)
    rng = np.random.default_rng(0)
    results = []
    for i in range(4):
        weights = {k: (v + rng.normal(0, 0.01, v.shape).astype(v.dtype)) if v.dtype == np.float32 else v.copy()
                   for k, v in reference.items()}
        for k in weights:
            if k.endswith("running_var"):
                weights[k] = np.abs(weights[k]) + 0.01
        results.append(FitResult(f"edge{i}", weights, 10 + i))
    params = {"num_malicious": "1", "beta": "0.2", "m": "2"}
    out = build_strategy(name, params).aggregate_fit(1, results, reference)
    assert set(out) == set(reference)
    assert all(np.all(np.isfinite(v)) for v in out.values() if v.dtype.kind == "f")
    assert all(np.all(v > 0) for k, v in out.items() if k.endswith("running_var"))
    load_numpy_state(yolo, out)
    with torch.inference_mode():
        raw = yolo.eval()(torch.rand(1, 3, 64, 64))[0]
    assert raw.shape == (1, 4 + 3, 84) and torch.isfinite(raw).all()
