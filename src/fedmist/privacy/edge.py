"""What a MistNet edge decides for itself before any of its data leaves: the noise level, the noise keys, the
ledger entry and the budget (issue 17: every guarantee is enforced by the party it protects).

* Effective epsilon: the stricter (smaller) of the edge's own ``epsilon`` and the aggregator's (the TASK's);
  the aggregator's value is the job's floor, never a way to loosen an edge. Same for ``label_epsilon``: the
  edge's own applies even when the aggregator sets none; unset on both = labels in clear.
* The noise seed: a secret drawn once (mode 0600) in the edge's state folder; the noise streams are keyed on
  it AND on the data (``fedmist.privacy.noise``).
* Before the first record goes out: a resumed upload must be one this edge recorded (else its state folder was
  lost or its data changed, and the aggregator's partial records can never be matched: a one-line
  configuration error instead of an endless retry), the release must fit ``privacy_budget``, and it is
  written to the ledger (``fedmist.privacy.ledger``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from fedmist.errors import ConfigurationError
from fedmist.privacy.ledger import LedgerError, Release, budget_refusal, read_ledger, record_release
from fedmist.privacy.noise import CoupledNoise, noise_key

SEED_FILE = "noise-seed"
BUDGET_PARAM = "privacy_budget"


def stricter(own: float | None, job: float | None) -> float | None:
    """The smaller of two epsilons, where ``None`` means "not set" (no constraint from that side)."""
    given = [eps for eps in (own, job) if eps is not None]
    return min(given) if given else None


def parse_budget(extra: dict[str, str]) -> float | None:
    """The trainer's ``privacy_budget`` (per-sample epsilon over all its releases), or None when unset."""
    found = [(key, value) for key, value in extra.items() if key.lower() == BUDGET_PARAM]
    if not found:
        return None
    if len({value.strip() for _, value in found}) > 1:
        raise ConfigurationError(f"{BUDGET_PARAM}: given twice with different values")
    raw = found[0][1].strip()
    try:
        budget = float(raw)
    except ValueError:
        budget = math.nan
    if math.isnan(budget) or budget <= 0 or math.isinf(budget):
        raise ConfigurationError(f"{BUDGET_PARAM}: must be a positive number (got {raw!r})")
    return budget


def features_fingerprint(model: str, cut_layer: int, num_classes: int, task: str, imgsz: int,
                         edge_weights: bytes | memoryview) -> str:
    """What turns this edge's images into bits: the edge model and its weights. Releases through another
    edge model get independent noise and are accounted as separate releases."""
    header = json.dumps([model, cut_layer, num_classes, task, imgsz]).encode()
    return hashlib.sha256(header + b"\0" + bytes(edge_weights)).hexdigest()


@dataclass(frozen=True)
class EdgePrivacy:
    """The edge's own privacy settings (parsed once at start) and its state folder."""

    state_dir: Path
    job: str
    worker: str
    epsilon: float
    label_epsilon: float | None
    budget: float | None

    @classmethod
    def from_context(cls, ctx) -> "EdgePrivacy":
        """ConfigurationError when the trainer has no epsilon of its own: the edge never runs on the
        aggregator's word alone."""
        if ctx.params.epsilon is None:
            raise ConfigurationError("epsilon: a MistNet trainer needs an epsilon of its own (the noise it "
                                     "promises its data; use epsilon: inf to send bits in clear explicitly)")
        budget = getattr(ctx.params, BUDGET_PARAM, None)  # a JobParams field if spec/ ever parses it
        return cls(Path(ctx.state_dir), ctx.job, ctx.worker, ctx.params.epsilon, ctx.params.label_epsilon,
                   budget if budget is not None else parse_budget(ctx.params.extra))

    def effective(self, task_epsilon: float, task_label_epsilon: float | None) -> tuple[float, float | None]:
        """(epsilon, label_epsilon) this edge applies: its own, or the job's floor where that is stricter."""
        return min(self.epsilon, task_epsilon), stricter(self.label_epsilon, task_label_epsilon)

    def seed(self) -> tuple[int, bool]:
        """This edge's secret noise seed and whether it was just created (mode 0600, O_EXCL)."""
        path = self.state_dir / SEED_FILE
        if path.exists():
            try:
                return int(path.read_text().strip()), False
            except (OSError, ValueError):
                raise ConfigurationError(f"{path}: unreadable noise seed; remove the edge's state folder "
                                         f"only if it never uploaded anything") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = secrets.randbits(127)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(str(seed))
            handle.flush()
            os.fsync(handle.fileno())
        return seed, True

    @staticmethod
    def noise(seed: int, data: str, features: str, purpose: str, k: int = 2) -> CoupledNoise:
        """The noise stream of one purpose ("features", "labels") over this data and edge model."""
        return CoupledNoise(noise_key(seed, data, features, purpose), k)

    def begin_release(self, release: Release, resume_records: int, seed_is_new: bool) -> None:
        """Check a release before its first record leaves, then record it (see the module docstring). A resume
        needs this very release in the ledger (written before its first record left, by this process or an
        earlier one); ``seed_is_new`` only tells the two reasons apart in the message."""
        try:
            known = read_ledger(self.state_dir)
        except LedgerError as exc:
            raise ConfigurationError(f"privacy ledger: {exc}") from None
        if resume_records and not any(k.key() == release.key() for k in known):
            why = ("its state folder (noise seed and ledger) was lost" if seed_is_new
                   else "its data, epsilon or edge model changed since then")
            raise ConfigurationError(
                f"the aggregator holds {resume_records} records of an earlier upload by this edge that it cannot "
                f"reproduce: {why} ({self.state_dir}); restore the state folder, or clear the aggregator's "
                f"feature store for worker {self.worker}")
        if self.budget is not None:
            reason = budget_refusal([k for k in known if k.key() != release.key()], release, self.budget)
            if reason:
                raise ConfigurationError(reason)
        try:
            record_release(self.state_dir, release)
        except OSError as exc:
            raise ConfigurationError(f"privacy ledger {self.state_dir}: {exc.strerror}") from None
