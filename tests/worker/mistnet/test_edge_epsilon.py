"""fedmist.worker.mistnet.edge_epsilon: an edge may be stricter than the job's floor, never looser."""

from __future__ import annotations

import math

import pytest

from fedmist.wire import messages as msg
from fedmist.wire.envelope import ProtocolError
from fedmist.worker.mistnet.edge_epsilon import EdgeEpsilon, check_edge_epsilon


def task(epsilon: str = "2.0", label_epsilon: str = "") -> msg.TaskMeta:
    return msg.TaskMeta(algorithm="mistnet", model="lenet5", cut_layer=3, epsilon=epsilon,
                        label_epsilon=label_epsilon, batch_size=32, num_classes=10, chunk_records=100)


def layout(epsilon: str, label_epsilon: str = "") -> msg.RecordsMeta:
    return msg.RecordsMeta(num_samples=4, feature_bytes=2, label_bytes=1, feature_shape=[16], epsilon=epsilon,
                           label_epsilon=label_epsilon)


def test_stricter_or_equal_budgets_are_accepted_as_declared() -> None:
    assert check_edge_epsilon(layout("1.5"), task("2.0")) == EdgeEpsilon(1.5, None)
    assert check_edge_epsilon(layout("2.0", "0.5"), task("2.0", "1.0")) == EdgeEpsilon(2.0, 0.5)
    assert check_edge_epsilon(layout("inf"), task("inf")) == EdgeEpsilon(math.inf, None)
    assert check_edge_epsilon(layout("1", "0.25"), task("2")) == EdgeEpsilon(1.0, 0.25)  # no job label floor


@pytest.mark.parametrize("records, job, message", [
    (layout("3.0"), task("2.0"), "epsilon 3.0 is looser than the job's floor 2.0; "
                                 "an edge applies the stricter of its own epsilon and the job's"),
    (layout("inf"), task("2.0"), "epsilon inf is looser than the job's floor 2.0; "
                                 "an edge applies the stricter of its own epsilon and the job's"),
    (layout("1.0"), task("2.0", "1.0"), "labels sent in clear, looser than the job's label_epsilon floor 1.0"),
    (layout("1.0", "1.5"), task("2.0", "1.0"), "label_epsilon 1.5 is looser than the job's floor 1.0; an edge "
                                               "applies the stricter of its own label_epsilon and the job's"),
    (layout("abc"), task(), "epsilon 'abc' must be a positive number or 'inf'"),
    (layout("0"), task(), "epsilon '0' must be a positive number or 'inf'"),
    (layout("nan"), task(), "epsilon 'nan' must be a positive number or 'inf'"),
    (layout("1", "-1"), task(), "label_epsilon '-1' must be a positive number or 'inf'"),
    (layout("1"), task("x"), "the job's epsilon 'x' must be a positive number or 'inf'"),
    (layout("1", "1"), task("2", "0"), "the job's label_epsilon '0' must be a positive number or 'inf'"),
])
def test_looser_or_malformed_budgets_are_refused(records: msg.RecordsMeta, job: msg.TaskMeta, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        check_edge_epsilon(records, job)
    assert str(info.value) == message


def test_the_text_form_writes_inf_and_empty_for_clear_labels() -> None:
    assert EdgeEpsilon(math.inf, None).as_text() == {"epsilon": "inf", "label_epsilon": ""}
    assert EdgeEpsilon(1.0, 0.5).as_text() == {"epsilon": "1.0", "label_epsilon": "0.5"}
