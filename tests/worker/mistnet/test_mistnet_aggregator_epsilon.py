"""The aggregator's epsilon is the job's floor and must be set; each edge's own comes from its store."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from fedmist.worker.errors import ConfigurationError
from fedmist.worker.mistnet.aggregator import edge_epsilon_texts, edge_epsilons, job_floor
from fedmist.worker.mistnet.feature_store import WorkerStore, open_complete_stores


def test_an_unset_aggregator_epsilon_is_a_configuration_error_not_inf():
    with pytest.raises(ConfigurationError) as info:
        job_floor(None)
    assert str(info.value) == ("epsilon: required for aggregation_algorithm=mistnet; "
                               "use epsilon: inf to disable noise explicitly")
    assert job_floor(math.inf) == math.inf and job_floor(2.0) == 2.0


def test_each_edges_budgets_come_from_its_store_and_old_stores_count_at_the_floor(tmp_path):
    for name, privacy in (("edge1", {"epsilon": "1.0", "label_epsilon": "0.5"}), ("edge2", None)):
        rows = np.zeros((2, 3), np.uint8)
        store = WorkerStore.open(tmp_path, name, num_samples=2, feature_bytes=2, label_bytes=1, feature_shape=[16],
                                 privacy=privacy)
        store.write(0, rows.tobytes())
        store.finish(hashlib.sha256(rows.tobytes()).hexdigest())
    found = edge_epsilons(open_complete_stores(tmp_path), 4.0, 2.0)
    assert found == {"edge1": (1.0, 0.5), "edge2": (4.0, 2.0)}  # edge2's manifest predates declared budgets
    assert edge_epsilon_texts({"edge1": (1.0, None), "edge2": (math.inf, 2.0)}) == {
        "edge1": {"epsilon": "1.0", "label_epsilon": ""}, "edge2": {"epsilon": "inf", "label_epsilon": "2.0"}}
