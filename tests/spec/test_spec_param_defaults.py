"""Each job parameter is parsed and defaulted once (issue 18 item 4): the one epsilon rule and text form, the
runtime defaults table, and the one aggregator port."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fedmist.cli.audit import parse_epsilon_list
from fedmist.spec.params import (
    DEFAULT_AGG_PORT,
    DEFAULT_CUT_LAYER,
    EPSILON_RULE,
    JobParams,
    format_epsilon,
    parse_epsilon,
    parse_params,
    with_defaults,
)
from fedmist.wire import messages as msg
from fedmist.wire.envelope import ProtocolError
from fedmist.worker.context import WorkerContext

SRC = Path(__file__).resolve().parents[2] / "src" / "fedmist"


@pytest.mark.parametrize(("text", "value"), [("inf", math.inf), ("Infinity", math.inf), (" +INF ", math.inf),
                                             ("2.5", 2.5), ("1e-3", 0.001), ("4", 4.0)])
def test_one_epsilon_rule_accepts(text: str, value: float) -> None:
    assert parse_epsilon(text) == value


@pytest.mark.parametrize("text", ["0", "0.0", "-1", "nan", "abc", "", "-inf", "1_0"])
def test_one_epsilon_rule_refuses_zero_and_garbage_with_one_message(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_epsilon(text)
    assert str(info.value) == EPSILON_RULE == "must be a positive number or 'inf'"


def test_the_same_rule_and_words_at_the_job_the_wire_and_the_audit_cli() -> None:
    with pytest.raises(Exception) as job:
        parse_params({"label_epsilon": "0"})
    assert str(job.value) == "<env>: label_epsilon: must be a positive number or 'inf' (got '0')"
    with pytest.raises(ProtocolError) as wire:
        msg.epsilon_field("0", "label_epsilon")
    assert str(wire.value) == "label_epsilon '0' must be a positive number or 'inf'"
    with pytest.raises(ValueError) as cli:
        parse_epsilon_list("2,0")
    assert str(cli.value) == "--epsilons '2,0': '0' must be a positive number or 'inf'"


def test_one_text_form_round_trips() -> None:
    assert [format_epsilon(e) for e in (math.inf, 1, 0.5, 1e-5)] == ["inf", "1.0", "0.5", "1e-05"]
    assert msg.format_epsilon is format_epsilon
    for eps in (math.inf, 2.0, 0.1, 1e-5, 123456.789):
        assert msg.epsilon_field(format_epsilon(eps)) == eps


def _mistnet(role: str, **env: str) -> JobParams:
    return parse_params({"aggregation_algorithm": "mistnet", "epsilon": "2", **env}, role=role)


def test_mistnet_classification_cloud_defaults() -> None:
    got = with_defaults(_mistnet("aggregator"), "classify", participants=3)
    assert (got.model, got.num_classes, got.cut_layer, got.batch_size, got.epochs, got.learning_rate) == (
        "lenet5", 10, 3, 64, 10, 0.05)
    assert (got.round_timeout, got.min_clients, got.debias, got.seed, got.imgsz) == (1800.0, 3, True, 0, None)


def test_mistnet_detection_cloud_defaults() -> None:
    got = with_defaults(_mistnet("aggregator"), "detect", participants=2)
    assert (got.model, got.cut_layer, got.imgsz, got.batch_size, got.epochs, got.learning_rate) == (
        None, 4, 640, 32, 10, 0.001)
    assert (got.round_timeout, got.min_clients, got.debias, got.seed) == (1800.0, 2, True, 0)
    assert DEFAULT_CUT_LAYER == {"classify": 3, "detect": 4}


def test_mistnet_edges_default_only_what_they_read() -> None:
    edge = with_defaults(_mistnet("trainer"), "classify")
    assert (edge.round_timeout, edge.epochs, edge.learning_rate, edge.batch_size, edge.cut_layer) == (
        120.0, None, None, None, None)
    assert with_defaults(_mistnet("trainer"), "detect").imgsz == 640


def test_fedavg_defaults_leave_the_round_config_free_to_win() -> None:
    agg = with_defaults(parse_params({}, role="aggregator"))
    assert (agg.model, agg.num_classes, agg.exit_round, agg.round_timeout, agg.min_clients, agg.seed) == (
        "lenet5", 10, 10, 600.0, 1, 0)
    assert (agg.epochs, agg.batch_size, agg.learning_rate, agg.cut_layer) == (None, None, None, None)
    edge = with_defaults(parse_params({}, role="trainer"))
    assert (edge.model, edge.round_timeout, edge.validation_split, edge.seed) == ("lenet5", 600.0, 0.0, 0)
    assert (edge.epochs, edge.batch_size, edge.learning_rate, edge.trainer) == (None, None, None, None)


def test_values_the_job_sets_are_kept() -> None:
    got = with_defaults(_mistnet("aggregator", cut_layer="features.3", batch_size="7", debias="false",
                                 min_clients="1", seed="9"), "classify", participants=5)
    assert (got.cut_layer, got.batch_size, got.debias, got.min_clients, got.seed) == ("features.3", 7, False, 1, 9)


def test_a_worker_receives_its_params_defaulted() -> None:
    env = {"JOB_NAME": "j", "aggregation_algorithm": "mistnet", "epsilon": "1", "PARTICIPANTS_COUNT": "4"}
    params = WorkerContext.from_env("aggregator", env).params
    assert (params.cut_layer, params.batch_size, params.min_clients, params.epsilon) == (3, 64, 4, 1.0)
    assert WorkerContext.from_env("trainer", {"JOB_NAME": "j"}).params.round_timeout == 600.0


def test_the_aggregator_port_is_written_once() -> None:
    assert DEFAULT_AGG_PORT == 7363
    holders = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "7363" in p.read_text())
    assert holders == ["spec/params.py"]
