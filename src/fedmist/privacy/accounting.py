"""Honest privacy figures for a MistNet job (DESIGN 5.9).

The report is meant for ``status.json`` and model metadata, so it must be JSON-safe: infinite values
(eps = inf) are written as the string ``"inf"`` (JSON has no infinity; ``json.dumps`` would emit the
non-standard token ``Infinity``). :func:`parse_epsilon` reads such values back.
"""

from __future__ import annotations

import math

from fedmist.privacy.channel import _check_eps, keep_probability, label_keep_probability


def binary_entropy(p: float) -> float:
    """H2(p) in bits, with the limits H2(0) = H2(1) = 0."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1.0 - p) * math.log2(1.0 - p))


def _json_number(x: float) -> float | str:
    """Infinity as ``"inf"`` so the report survives strict JSON encoders."""
    return "inf" if math.isinf(x) else float(x)


def parse_epsilon(value: float | int | str) -> float:
    """Read back an epsilon of a report ("inf", "Infinity", 2, "0.5"). Why not spec/params.py's rule: figures
    describe the channel, which is defined at 0 too (privacy/channel.py's rule); what a job accepts is decided
    once, when its parameters are parsed."""
    try:
        eps = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"epsilon must be a number or 'inf', got {value!r}") from None
    return _check_eps(eps)


def label_capacity(k: int, label_epsilon: float) -> float:
    """Capacity in bits of the k-ary symmetric channel of label randomized response.

    ``log2 k - H(q, (1-q)/(k-1), ...)`` with keep probability ``q``: ``log2 k`` when labels travel in
    clear, 0 at ``label_epsilon = 0``.
    """
    q = label_keep_probability(k, label_epsilon)
    other = (1.0 - q) / (k - 1)
    h = -sum(x * math.log2(x) for x in (q, *([other] * (k - 1))) if x > 0.0)
    return max(0.0, math.log2(k) - h)


def privacy_report(eps: float, r: int, label_epsilon: float | None = None,
                   num_classes: int = 10) -> dict[str, float | int | str | None]:
    """Per-feature and per-sample privacy figures plus the channel capacity bound.

    * ``epsilon_per_sample = r * eps``: basic composition over the r bits one sample sends;
    * ``capacity_bits_per_sample = r * (1 - H2(p))``: Shannon capacity of r binary symmetric channels with
      crossover ``1 - p``, an upper bound on what the cloud can learn per sample, whatever it does.
    * labels: ``label_epsilon`` (``None`` = labels travel in clear), the k-ary keep probability and
      ``label_capacity_bits`` (``log2 k`` in clear), for ``num_classes`` = k classes.
    """
    eps = parse_epsilon(eps)
    if int(r) != r or r < 0:
        raise ValueError(f"features_per_sample must be a non-negative integer, got {r!r}")
    r = int(r)
    p = keep_probability(eps)
    per_sample = math.inf if math.isinf(eps) and r > 0 else r * eps
    return {
        "epsilon_per_feature": _json_number(eps),
        "features_per_sample": r,
        "epsilon_per_sample": _json_number(per_sample),
        "keep_probability": p,
        "capacity_bits_per_sample": r * (1.0 - binary_entropy(p)),
        "label_epsilon": None if label_epsilon is None else _json_number(parse_epsilon(label_epsilon)),
        "label_keep_probability": 1.0 if label_epsilon is None else label_keep_probability(num_classes, label_epsilon),
        "label_capacity_bits": math.log2(num_classes) if label_epsilon is None
        else label_capacity(num_classes, parse_epsilon(label_epsilon)),
    }


def job_privacy_report(floor: float, label_floor: float | None, edges: dict[str, tuple[float, float | None]], r: int,
                       num_classes: int) -> dict[str, object]:
    """The job's privacy figures: the floor's at top level (the weakest guarantee any edge may have: every edge
    applies the floor or something stricter), ``epsilon_floor``/``label_epsilon_floor`` naming it, and
    ``edges``: each edge's own :func:`privacy_report` at the budgets it applied. ``num_classes`` is the job's
    real class count (the label figures depend on it)."""
    report: dict[str, object] = dict(privacy_report(floor, r, label_floor, num_classes=num_classes))
    report["epsilon_floor"] = report["epsilon_per_feature"]
    report["label_epsilon_floor"] = report["label_epsilon"]
    report["num_classes"] = num_classes
    report["edges"] = {name: privacy_report(eps, r, label, num_classes=num_classes)
                       for name, (eps, label) in sorted(edges.items())}
    return report
