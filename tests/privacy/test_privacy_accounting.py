"""Privacy report figures, exact values and JSON safety."""

from __future__ import annotations

import json
import math

import pytest

from fedmist.privacy.accounting import binary_entropy, parse_epsilon, privacy_report


def test_report_exact_values_eps_one() -> None:
    rep = privacy_report(1.0, 1176)
    p = math.e / (1 + math.e)
    h2 = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert rep["epsilon_per_feature"] == 1.0
    assert rep["features_per_sample"] == 1176
    assert rep["epsilon_per_sample"] == 1176.0
    assert rep["keep_probability"] == pytest.approx(p, rel=1e-15)
    assert rep["capacity_bits_per_sample"] == pytest.approx(1176 * (1 - h2), rel=1e-12)
    assert rep["capacity_bits_per_sample"] == pytest.approx(188.229, abs=0.001)
    assert rep["label_epsilon"] is None


def test_report_limits_and_json() -> None:
    inf = privacy_report(float("inf"), 1176, label_epsilon=float("inf"))
    assert inf["epsilon_per_feature"] == "inf" and inf["epsilon_per_sample"] == "inf"
    assert inf["capacity_bits_per_sample"] == 1176.0 and inf["keep_probability"] == 1.0
    assert inf["label_epsilon"] == "inf"
    zero = privacy_report(0.0, 1176, label_epsilon=2)
    assert zero["capacity_bits_per_sample"] == 0.0 and zero["epsilon_per_sample"] == 0.0
    assert zero["label_epsilon"] == 2.0
    json.dumps(inf, allow_nan=False)  # strict JSON: no Infinity token


def test_entropy_and_parsing() -> None:
    assert binary_entropy(0.5) == 1.0 and binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0
    assert parse_epsilon("inf") == math.inf and parse_epsilon("0.5") == 0.5
    with pytest.raises(ValueError, match="epsilon"):
        parse_epsilon("lots")
    with pytest.raises(ValueError, match="features_per_sample"):
        privacy_report(1.0, -1)
