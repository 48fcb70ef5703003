"""Every MistNet edge carries its own epsilon (issue 17); differing values are valid, announced in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fedmist.api import Job
from fedmist.spec import ManifestError, load_manifests, resolve_job

WriteJob = Callable[..., Path]
JOB = "FederatedLearningJob/mnist-mistnet"
EDGE1_EPS = '                - name: epsilon\n                  value: "2"\n    - dataset:'


def _resolve(path: Path):  # type: ignore[no-untyped-def]
    return resolve_job(load_manifests([path]), environ={})


def test_a_mistnet_trainer_without_epsilon_is_a_configuration_error(write_job: WriteJob) -> None:
    path = write_job(replace=((EDGE1_EPS, "                - name: batch_size\n                  value: \"8\"\n"
                                          "    - dataset:"),))
    with pytest.raises(ManifestError) as info:
        _resolve(path)
    assert str(info.value) == (f"{path}: {JOB}: spec.trainingWorkers[0].template.spec.containers[0].env.epsilon: "
                               "required for aggregation_algorithm=mistnet; use epsilon: inf to disable noise explicitly")


def test_equal_values_give_no_warning(write_job: WriteJob) -> None:
    assert _resolve(write_job()).warnings == ()


def test_differing_epsilons_give_one_line_saying_what_each_edge_uses(write_job: WriteJob) -> None:
    path = write_job(replace=(('              - name: epsilon\n                value: "2"',
                               '              - name: epsilon\n                value: "100"'),
                              (EDGE1_EPS, EDGE1_EPS.replace('"2"', '"2.5"'))))
    expected = ("epsilon differs: aggregator 100 (the job's floor); edge-1 uses 2.5 (its own), "
                "edge-2 uses 2 (its own)")
    assert _resolve(path).warnings == (expected,)
    assert Job.from_manifests(path).warnings == [expected]  # what `fedmist validate` and `run` print


def test_an_edge_looser_than_the_floor_is_told_it_uses_the_floor(write_job: WriteJob) -> None:
    path = write_job(replace=((EDGE1_EPS, EDGE1_EPS.replace('"2"', '"inf"')),))
    assert _resolve(path).warnings == (
        "epsilon differs: aggregator 2 (the job's floor); edge-1 uses 2 (the floor), edge-2 uses 2 (the floor)",)


def test_differing_label_epsilons_give_their_own_line(write_job: WriteJob) -> None:
    label = '                - name: label_epsilon\n                  value: "0.5"\n'
    path = write_job(replace=((EDGE1_EPS, label + EDGE1_EPS),))
    assert _resolve(path).warnings == (
        "label_epsilon differs: aggregator unset (the job's floor); edge-1 uses 0.5 (its own), "
        "edge-2 sends labels in clear (the floor)",)
    path = write_job(replace=(('              - name: epsilon\n                value: "2"',
                               '              - name: epsilon\n                value: "2"\n'
                               '              - name: label_epsilon\n                value: "1"'),
                              (EDGE1_EPS, label + EDGE1_EPS)))
    assert _resolve(path).warnings == (
        "label_epsilon differs: aggregator 1 (the job's floor); edge-1 uses 0.5 (its own), edge-2 uses 1 (the floor)",)
