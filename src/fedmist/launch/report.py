"""``fedmist report DIR``: turn a job's ``status.json`` history into a PNG people would rather look at.

One figure, two panels: the job's headline metric (test accuracy, or mAP) and loss, per epoch (MistNet) or
per round (FedAvg family), against the step and against elapsed seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _series(history: list[dict[str, Any]], key: str) -> list[float | None]:
    return [h.get(key) if isinstance(h.get(key), (int, float)) else None for h in history]


def _step_key(history: list[dict[str, Any]]) -> str:
    return "round" if history and "round" in history[0] else "epoch"


def _elapsed(history: list[dict[str, Any]]) -> list[float]:
    total, out = 0.0, []
    for entry in history:
        total += float(entry.get("seconds", entry.get("duration_s", 0.0)) or 0.0)
        out.append(total)
    return out


def write_report(workdir: Path, out: Path | None = None) -> Path:
    """Plot the history in ``workdir/status.json`` to ``out`` (default ``workdir/report.png``)."""
    status_path = Path(workdir) / "status.json"
    try:
        status = json.loads(status_path.read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"no readable status.json in {workdir}: {exc}") from None
    history = status.get("metrics", {}).get("history") or []
    if not history:
        raise ValueError(f"{status_path} has no per-epoch or per-round history to plot yet")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = _step_key(history)
    steps = [h.get(step) for h in history]
    metric = next((k for k in ("test_accuracy", "accuracy", "mAP50") if any(_series(history, k))), "accuracy")
    loss = "test_loss" if any(_series(history, "test_loss")) else "loss"
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, xs, xlabel in ((left, steps, step), (right, _elapsed(history), "elapsed training seconds")):
        axis.plot(xs, _series(history, metric), marker="o", label=metric)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        twin = axis.twinx()
        twin.plot(xs, _series(history, loss), color="tab:red", linestyle="--", label=loss)
        twin.set_ylabel(loss)
    privacy = status.get("metrics", {}).get("privacy", {})
    eps = f", epsilon {privacy.get('epsilon_per_feature')}" if privacy else ""
    figure.suptitle(f"{status.get('job', '')}: {status.get('phase', '')}{eps}")
    figure.tight_layout()
    target = Path(out) if out else Path(workdir) / "report.png"
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target
