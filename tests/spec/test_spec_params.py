import math

import pytest

from fedmist.spec import JobParams, ParamError, parse_params


def param_error(env: dict[str, str], role: str = "aggregator") -> str:
    with pytest.raises(ParamError) as info:
        parse_params(env, role=role)
    return str(info.value)


def test_defaults() -> None:
    params = parse_params({})
    assert params == JobParams()
    assert params.aggregation_algorithm == "fedavg" and params.model is None and params.epsilon is None
    assert params.debias is None and params.extra == {}  # None: the runtime picks its own default


def test_names_are_case_insensitive_and_values_typed() -> None:
    params = parse_params({"EPSILON": "2.5", "Cut_Layer": "3", "AGGREGATION_ALGORITHM": "MistNet",
                           "epochs": " 10 ", "TEST_DATASET_URL": "/data/test", "Debias": "yes",
                           "learning_rate": "1e-3"}, role="trainer")
    assert (params.epsilon, params.cut_layer, params.aggregation_algorithm, params.epochs) == (2.5, 3, "mistnet", 10)
    assert params.test_dataset_url == "/data/test" and params.debias is True and params.learning_rate == 0.001
    assert params.role == "trainer"


def test_same_value_under_two_cases_is_fine_different_values_are_not() -> None:
    assert parse_params({"EPSILON": "1", "epsilon": "1"}).epsilon == 1.0
    assert param_error({"EPSILON": "1", "epsilon": "2"}) == (
        "<env>: epsilon: given twice with different values, as 'EPSILON' and 'epsilon' "
        "(got {'EPSILON': '1', 'epsilon': '2'})")


def test_mistnet_requires_epsilon() -> None:
    assert param_error({"aggregation_algorithm": "mistnet"}) == (
        "<env>: epsilon: required for aggregation_algorithm=mistnet; use epsilon: inf to disable noise explicitly")
    assert parse_params({"aggregation_algorithm": "mistnet", "epsilon": "inf"}).epsilon == math.inf


@pytest.mark.parametrize(("env", "message"), [
    ({"epsilon": "abc"}, "<env>: epsilon: must be a positive number or 'inf' (got 'abc')"),
    ({"EPSILON": "0"}, "<env>: EPSILON: must be a positive number or 'inf' (got '0')"),
    ({"epsilon": "nan"}, "<env>: epsilon: must be a positive number or 'inf' (got 'nan')"),
    ({"epochs": "ten"}, "<env>: epochs: must be an integer >= 1 (got 'ten')"),
    ({"batch_size": "0"}, "<env>: batch_size: must be an integer >= 1 (got '0')"),
    ({"cut_layer": "-1"}, "<env>: cut_layer: must be an integer >= 1 or a layer name (got '-1')"),
    ({"learning_rate": "fast"}, "<env>: learning_rate: must be a positive number (got 'fast')"),
    ({"fraction_fit": "1.5"}, "<env>: fraction_fit: must be a number in (0, 1] (got '1.5')"),
    ({"debias": "maybe"}, "<env>: debias: must be true or false (got 'maybe')"),
    ({"test_dataset_url": ""}, "<env>: test_dataset_url: must not be empty (got '')"),
    ({"aggregation_algorithm": "fedsgd"},
     "<env>: aggregation_algorithm: must be one of mistnet, fedavg, fedprox, fedadam, fedyogi, fedadagrad, "
     "fedmedian, trimmedmean, krum, multikrum, or an import path 'package.module:Name' (got 'fedsgd')"),
])
def test_bad_values(env: dict[str, str], message: str) -> None:
    assert param_error(env) == message


def test_layer_names_import_paths_and_extra() -> None:
    params = parse_params({"cut_layer": "features.3", "aggregation_algorithm": "my.algos:Custom",
                           "model": "my.models:build", "my_knob": "7", "JOB_NAME": "j", "AGG_PORT": "1"})
    assert params.cut_layer == "features.3" and params.aggregation_algorithm == "my.algos:Custom"
    assert params.model == "my.models:build"
    assert params.extra == {"my_knob": "7"}  # injected contract names are not "extra"


def test_params_are_frozen() -> None:
    params = parse_params({"epochs": "2"})
    with pytest.raises(ValueError):
        params.epochs = 3  # type: ignore[misc]
