"""fedmist.audit.runner's seams: which series the audit draws, how it samples victims/members, its timings.
(The attacks themselves are run on real data in test_audit_attacks.py.)"""

from __future__ import annotations

import math

import numpy as np
import torch
from tiny_world import tiny_images, tiny_parts

from fedmist.audit.job_data import AuditData
from fedmist.audit.runner import AuditConfig, _Auditor, _series


def _data(top_label: int | None = None) -> AuditData:
    edge, cloud = tiny_parts()
    (aux, aux_y), (vic, vic_y), (test, test_y) = tiny_images(12, 0), tiny_images(10, 1), tiny_images(6, 2)
    if top_label is not None:
        aux_y[0] = top_label  # the largest label seen names the class count
    return AuditData(model_name="lenet5", edge=edge, cloud=cloud, cut=3, job_epsilon=math.inf, label_epsilon=None,
                     epochs=4, batch_size=8, learning_rate=0.05, debias=True, aux_images=aux, aux_labels=aux_y,
                     edge_images=vic, edge_labels=vic_y, test_images=test, test_labels=test_y,
                     pretrained_state={})


def test_series_are_the_job_then_its_label_channel_then_a_narrow_cut() -> None:
    data = _data()
    only = _series(data, AuditConfig(epsilons=[1.0]), print)
    assert [(s.name, s.label_epsilon, s.attacks_from) for s in only] == [("job", None, None)]
    logged: list[str] = []
    config = AuditConfig(epsilons=[1.0], label_epsilon=0.5, narrow_channels=2)
    config.seed = 3
    series = _series(data, config, logged.append)
    assert [(s.name, s.label_epsilon, s.attacks_from) for s in series] == [
        ("job", None, None), ("label_eps=0.5", 0.5, "job"), ("narrow_2ch", None, None)]
    assert series[1].edge is data.edge and series[2].edge is not data.edge
    assert series[2].edge(torch.zeros(1, 1, 28, 28)).shape[1] == 2
    assert len(logged) == 1 and logged[0].startswith("audit: narrow cut (2 channels) trained on public data (")


def test_victims_members_and_non_members_are_sorted_samples_without_repeats() -> None:
    data = _data(top_label=11)
    auditor = _Auditor(data, AuditConfig(epsilons=[1.0], victims=4, members=100, seed=1), print)
    assert len(auditor.victim_idx) == 4 and len(set(auditor.victim_idx)) == 4
    assert list(auditor.victim_idx) == sorted(auditor.victim_idx)
    assert sorted(auditor.member_idx) == list(range(10))  # capped at the edge data
    assert sorted(auditor.nonmember_idx) == list(range(6))  # capped at the test set
    assert auditor.victims.shape == (4, 1, 28, 28)
    assert torch.equal(auditor.victim_labels, torch.as_tensor(data.edge_labels[auditor.victim_idx]))
    assert auditor.num_classes == 12 and auditor.class_means.shape[0] == 12
    assert auditor.utility.epochs == 4 and auditor.utility.batch_size == 8 and auditor.utility.seed == 1
    again = _Auditor(data, AuditConfig(epsilons=[1.0], victims=4, members=100, seed=1), print)
    assert np.array_equal(again.victim_idx, auditor.victim_idx)


def test_utility_epochs_can_be_overridden_and_stages_are_timed() -> None:
    logged: list[str] = []
    auditor = _Auditor(_data(), AuditConfig(epsilons=[1.0], utility_epochs=1), logged.append)
    assert auditor.utility.epochs == 1
    assert auditor.timed("stage one", lambda: 42) == 42
    assert auditor.timings[0]["stage"] == "stage one" and auditor.timings[0]["seconds"] >= 0
    assert logged[0].startswith("audit: stage one (") and logged[0].endswith(" s)")
