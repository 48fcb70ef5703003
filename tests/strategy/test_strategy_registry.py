"""build_strategy: names, env parameters (strings, any case), import paths and one-line errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fedmist.strategy import (
    STRATEGIES,
    FedAdam,
    FedAvg,
    FedProx,
    FedYogi,
    MultiKrum,
    TrimmedMean,
    build_strategy,
)

NAMES = ["fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedmedian", "trimmedmean", "krum", "multikrum"]


def test_every_documented_name_is_registered() -> None:
    assert list(STRATEGIES) == NAMES
    for name in NAMES:
        assert type(build_strategy(name, {})) is STRATEGIES[name]
    assert isinstance(build_strategy("  FedAvg ", {}), FedAvg)


def test_env_parameters_are_coerced_case_insensitively() -> None:
    env = {"SERVER_LEARNING_RATE": "0.01", "beta_1": 0.8, "Tau": "1e-3", "min_clients": "2.0",
           "fraction_fit": "0.5", "epsilon": "1", "batch_size": "32", "cut_layer": "conv1"}
    strategy = build_strategy("fedadam", env)
    assert isinstance(strategy, FedAdam)
    assert (strategy.server_learning_rate, strategy.beta_1, strategy.beta_2, strategy.tau) == (0.01, 0.8, 0.99, 1e-3)
    assert strategy.min_clients == 2 and isinstance(strategy.min_clients, int)
    assert strategy.fraction_fit == 0.5
    fedprox = build_strategy("fedprox", {"MU": "0.5"})
    assert isinstance(fedprox, FedProx) and fedprox.mu == 0.5
    trimmed = build_strategy("trimmedmean", {"beta": "0.1"})
    assert isinstance(trimmed, TrimmedMean) and trimmed.beta == 0.1
    multikrum = build_strategy("multikrum", {"num_malicious": "1", "m": "3"})
    assert isinstance(multikrum, MultiKrum) and (multikrum.num_malicious, multikrum.m) == (1, 3)


def test_none_means_unset_so_validated_job_params_pass_through() -> None:
    env = {"aggregation_algorithm": "fedprox", "mu": None, "min_clients": None, "fraction_fit": 0.5, "m": None}
    strategy = build_strategy("fedprox", env)
    assert isinstance(strategy, FedProx)
    assert (strategy.mu, strategy.min_clients, strategy.fraction_fit) == (0.01, 1, 0.5)


def test_defaults() -> None:
    yogi = build_strategy("fedyogi", {})
    assert isinstance(yogi, FedYogi)
    assert (yogi.server_learning_rate, yogi.beta_1, yogi.beta_2, yogi.tau) == (0.1, 0.9, 0.99, 1e-9)
    assert (yogi.fraction_fit, yogi.min_clients) == (1.0, 1)
    assert build_strategy("multikrum", {}).m is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "env", "message"),
    [
        ("fedavg", {"min_clients": "2.5"}, "strategy parameter min_clients='2.5': expected an int"),
        ("fedprox", {"mu": "abc"}, "strategy parameter mu='abc': expected a float"),
        ("fedprox", {"mu": "nan"}, "mu='nan'"),
        ("fedprox", {"mu": True}, "mu=True"),
        ("fedprox", {"mu": "0.1", "MU": "0.2"}, "parameter mu is set twice"),
        ("trimmedmean", {"beta": "0.6"}, "beta must be in"),
        ("fedadam", {"beta_2": "1"}, "beta_2 must be in"),
    ],
)
def test_bad_parameters_fail_with_one_line_naming_them(name: str, env: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        build_strategy(name, env)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["fedsgd", "mistnet", ""])
def test_unknown_name_lists_the_known_ones_on_one_line(name: str) -> None:
    with pytest.raises(ValueError) as info:
        build_strategy(name, {})
    message = str(info.value)
    assert "\n" not in message
    assert f"unknown aggregation_algorithm {name!r}" in message
    assert "known: " + ", ".join(NAMES) in message


def test_import_path_builds_a_user_strategy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_strategies.py").write_text(textwrap.dedent("""
        from typing import Any
        from fedmist.strategy import FedAvg

        class Damped(FedAvg):
            def __init__(self, *, alpha: float = 1.0, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.alpha = alpha

        class NotAStrategy:
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    strategy = build_strategy("my_strategies:Damped", {"ALPHA": "0.25", "min_clients": "2"})
    assert type(strategy).__name__ == "Damped"
    assert strategy.alpha == 0.25 and strategy.min_clients == 2  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="is not a subclass of fedmist.strategy.Strategy"):
        build_strategy("my_strategies:NotAStrategy", {})
    with pytest.raises(ValueError, match="module 'my_strategies' has no attribute 'Missing'"):
        build_strategy("my_strategies:Missing", {})


@pytest.mark.parametrize(
    ("path", "message"),
    [("no_such_pkg.mod:X", "strategy 'no_such_pkg.mod:X': cannot import module 'no_such_pkg.mod'"), ("fedmist.strategy:", "must look like"),
     ("fedmist.strategy.base:Strategy", "is abstract")],
)
def test_bad_import_paths(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_strategy(path, {})


def test_builtin_class_by_import_path_and_code_only_kwargs() -> None:
    def evaluate(round_: int, weights: dict[str, np.ndarray]) -> dict[str, float]:
        return {"accuracy": 1.0}

    strategy = build_strategy("fedmist.strategy.fedavg:FedAvg", {"fraction_fit": "0.2"}, evaluate_fn=evaluate)
    assert isinstance(strategy, FedAvg) and strategy.fraction_fit == 0.2
    assert strategy.evaluate(1, {}) == {"accuracy": 1.0}


def test_strategy_package_does_not_import_torch() -> None:
    code = "import sys, fedmist.strategy; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
