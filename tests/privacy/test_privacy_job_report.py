"""The job's privacy figures: the floor's at top level, each edge's own, label figures at the job's real k."""

from __future__ import annotations

import math

import pytest

from fedmist.privacy.accounting import job_privacy_report


def test_each_edge_gets_its_own_figures_and_labels_use_the_jobs_class_count():
    report = job_privacy_report(2.0, 1.0, {"edge2": (2.0, 1.0), "edge1": (0.5, 0.25)}, 4, num_classes=3)
    # 3 classes, label epsilon 1: keep e/(e+2), each other class 1/(e+2); capacity log2 3 - H(q, o, o)
    q, other = math.e / (math.e + 2), 1 / (math.e + 2)
    assert report["label_keep_probability"] == pytest.approx(q, rel=1e-12)
    assert report["label_capacity_bits"] == pytest.approx(
        math.log2(3) + q * math.log2(q) + 2 * other * math.log2(other), rel=1e-12)
    assert report["label_keep_probability"] == pytest.approx(0.5761168847658291, rel=1e-12)  # k=10 gives 0.2320
    assert report["label_capacity_bits"] == pytest.approx(0.17786187834204936, rel=1e-12)
    assert (report["epsilon_floor"], report["label_epsilon_floor"], report["num_classes"]) == (2.0, 1.0, 3)
    assert report["epsilon_per_sample"] == 8.0 and report["features_per_sample"] == 4
    assert list(report["edges"]) == ["edge1", "edge2"]
    edge1 = report["edges"]["edge1"]
    assert (edge1["epsilon_per_feature"], edge1["epsilon_per_sample"], edge1["label_epsilon"]) == (0.5, 2.0, 0.25)
    assert edge1["keep_probability"] == pytest.approx(1 / (1 + math.exp(-0.5)), rel=1e-12)
    assert edge1["label_keep_probability"] == pytest.approx(1 / (1 + 2 * math.exp(-0.25)), rel=1e-12)
    assert report["edges"]["edge2"]["label_capacity_bits"] == report["label_capacity_bits"]


def test_clear_labels_carry_log2_k_bits_at_the_jobs_k():
    report = job_privacy_report(math.inf, None, {"cam": (math.inf, None)}, 1600, num_classes=80)
    assert report["label_capacity_bits"] == pytest.approx(math.log2(80), rel=1e-12)
    assert report["edges"]["cam"]["label_capacity_bits"] == pytest.approx(math.log2(80), rel=1e-12)
    assert report["epsilon_floor"] == "inf" and report["edges"]["cam"]["epsilon_per_sample"] == "inf"
    assert report["label_epsilon_floor"] is None and report["edges"]["cam"]["label_keep_probability"] == 1.0
