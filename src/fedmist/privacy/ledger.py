"""The edge's own privacy ledger: every release it made, and the cumulative guarantee they add up to.

Why on the edge: the guarantee protects the edge's data, so the edge keeps the account (trust principle: every
guarantee is enforced by the party it protects); the aggregator's view is never needed. The ledger is a JSON
lines file in the edge's state folder (mode 0600, beside its noise seed), appended with ``fsync`` BEFORE the
first record of a release leaves the edge, so a crash can never leave a release unaccounted for.

A release is identified by ``(job, worker, data, features, epsilon, label_epsilon, r)``: a resumed upload of
the same release is not a new entry. The cumulative guarantee (``fedmist.privacy.noise`` explains why):

* releases of the same data through the same edge model (same ``data`` and ``features`` fingerprints) use
  coupled noise, so together they are worth the largest epsilon among them, not the sum;
* releases of different data, or through another edge model, have independent noise: basic composition sums
  them. Per feature (eps), per sample (``r * eps``: the figure ``privacy_budget`` limits) and for labels
  (coupled per data fingerprint; labels in clear count as infinity).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

LEDGER_FILE = "privacy-ledger.jsonl"
MAX_LINE = 4096  # bytes of one entry; longer lines are not ledger entries
MAX_ENTRIES = 100_000  # the ledger is read whole; more entries than this is not a ledger this code wrote


class LedgerError(ValueError):
    """The ledger cannot be read or written: the edge must not release anything it cannot account for."""


def _number(value: float | None) -> float | str | None:
    return None if value is None else ("inf" if math.isinf(value) else float(value))


def _read_number(value: object, field: str, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LedgerError(f"{field} is not a number: {value!r}") from None
    if math.isnan(number) or number <= 0:
        raise LedgerError(f"{field} must be a positive number or 'inf': {value!r}")
    return number


@dataclass(frozen=True)
class Release:
    """One release: ``r`` bits per sample of the data ``data`` made by the edge model ``features``, at
    ``epsilon`` per bit, with labels at ``label_epsilon`` (``None``: in clear)."""

    data: str
    features: str
    epsilon: float
    r: int
    label_epsilon: float | None
    job: str
    worker: str
    time: str = ""

    def key(self) -> tuple:
        return (self.job, self.worker, self.data, self.features, self.epsilon, self.label_epsilon, self.r)

    def to_json(self) -> str:
        fields = asdict(self)
        fields.update(epsilon=_number(self.epsilon), label_epsilon=_number(self.label_epsilon))
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> "Release":
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise LedgerError(f"not JSON ({exc})") from None
        if not isinstance(raw, dict) or set(raw) != {f for f in cls.__dataclass_fields__}:
            raise LedgerError("not a ledger entry (wrong fields)")
        r = raw["r"]
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise LedgerError(f"r must be a positive integer: {r!r}")
        texts = {name: raw[name] for name in ("data", "features", "job", "worker", "time")}
        if not all(isinstance(v, str) and len(v) <= 512 for v in texts.values()):
            raise LedgerError("text fields must be strings of at most 512 characters")
        return cls(epsilon=_read_number(raw["epsilon"], "epsilon"), r=r,  # type: ignore[arg-type]
                   label_epsilon=_read_number(raw["label_epsilon"], "label_epsilon", optional=True), **texts)


@dataclass(frozen=True)
class Guarantee:
    """The cumulative guarantee of a set of releases (infinite where anything went out in clear)."""

    releases: int
    per_feature: float
    per_sample: float
    labels: float


def ledger_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / LEDGER_FILE


def read_ledger(state_dir: str | Path) -> list[Release]:
    """Every release recorded in ``state_dir`` (none when there is no ledger yet); LedgerError on a damaged
    ledger, naming the line, since an edge that cannot read its account must not spend more."""
    path = ledger_path(state_dir)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LedgerError(f"{path}: {exc.strerror}") from None
    releases: list[Release] = []
    with handle:
        for number, raw in enumerate(handle, 1):
            if number > MAX_ENTRIES:
                raise LedgerError(f"{path}: more than {MAX_ENTRIES} entries")
            if len(raw) > MAX_LINE:
                raise LedgerError(f"{path}:{number}: entry longer than {MAX_LINE} bytes")
            if not raw.strip():
                continue
            try:
                releases.append(Release.from_json(raw.decode("utf-8")))
            except (LedgerError, UnicodeDecodeError) as exc:
                raise LedgerError(f"{path}:{number}: {exc}") from None
    return releases


def record_release(state_dir: str | Path, release: Release) -> bool:
    """Append ``release`` (fsync'd, file mode 0600) unless the ledger already holds it; True when appended."""
    if any(known.key() == release.key() for known in read_ledger(state_dir)):
        return False
    if not release.time:
        release = Release(**{**asdict(release), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    path = ledger_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (release.to_json() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:  # the new file's name must survive a crash too
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return True


def cumulative(releases: Iterable[Release]) -> Guarantee:
    """Largest epsilon within a group of coupled releases, summed across groups (see the module docstring)."""
    releases = list(releases)
    features: dict[tuple[str, str], tuple[float, float]] = {}
    labels: dict[str, float] = {}
    for item in releases:
        group = (item.data, item.features)
        eps, per_sample = features.get(group, (0.0, 0.0))
        sample = math.inf if math.isinf(item.epsilon) else item.r * item.epsilon
        features[group] = (max(eps, item.epsilon), max(per_sample, sample))
        label = math.inf if item.label_epsilon is None else item.label_epsilon
        labels[item.data] = max(labels.get(item.data, 0.0), label)
    return Guarantee(releases=len(releases), per_feature=sum(e for e, _ in features.values()),
                     per_sample=sum(s for _, s in features.values()), labels=sum(labels.values()))


def budget_refusal(releases: list[Release], new: Release, budget: float) -> str | None:
    """Why ``new`` may not go out under a per-sample ``budget`` (one line), or None when it fits."""
    before = cumulative(releases)
    after = cumulative([*releases, new])
    if after.per_sample <= budget * (1 + 1e-12):
        return None
    return (f"privacy budget exceeded: this job would release {new.r} features per sample at epsilon "
            f"{_show(new.epsilon)} ({_show(new.r * new.epsilon)} per sample); with the {before.releases} "
            f"earlier releases in this edge's ledger (cumulative {_show(before.per_sample)} per sample) that makes "
            f"{_show(after.per_sample)}, over privacy_budget {_show(budget)}; nothing was uploaded")


def _show(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:g}"


def format_ledger(releases: list[Release]) -> str:
    """The ledger as a table, then the cumulative guarantee."""
    lines = [f"{'time':20}  {'job':20}  {'worker':12}  {'data':12}  {'features':12}  {'eps':>8}  {'r':>7}  "
             f"{'eps/sample':>11}  {'label eps':>9}"]
    for item in releases:
        label = "clear" if item.label_epsilon is None else _show(item.label_epsilon)
        lines.append(f"{item.time:20}  {item.job[:20]:20}  {item.worker[:12]:12}  {item.data[:12]:12}  "
                     f"{item.features[:12]:12}  {_show(item.epsilon):>8}  {item.r:>7}  "
                     f"{_show(item.r * item.epsilon):>11}  {label:>9}")
    total = cumulative(releases)
    groups = len({(item.data, item.features) for item in releases})
    lines += ["", f"cumulative guarantee over {total.releases} releases in {groups} independent groups "
                  f"(same data and edge model: the largest epsilon; different: the sum):",
              f"  epsilon per feature: {_show(total.per_feature)}",
              f"  epsilon per sample:  {_show(total.per_sample)}",
              f"  label epsilon:       {_show(total.labels)}" + ("  (labels went out in clear)"
                                                                if math.isinf(total.labels) else "")]
    return "\n".join(lines)


def ledger_command(state_dir: str) -> int:
    """``fedmist privacy ledger DIR``: print an edge's ledger and its cumulative guarantee; exit code."""
    folder = Path(state_dir)
    if not folder.is_dir():
        print(f"error: {state_dir}: not a folder (give an edge's state folder, the one holding its noise-seed)",
              file=sys.stderr)
        return 2
    try:
        releases = read_ledger(folder)
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not releases:
        print(f"no releases recorded in {ledger_path(folder)}")
        return 0
    print(format_ledger(releases))
    return 0
