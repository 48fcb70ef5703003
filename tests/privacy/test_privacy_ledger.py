"""The edge's privacy ledger (fedmist.privacy.ledger) and the edge's own decisions (fedmist.privacy.edge):
exact cumulative guarantees, the printed ledger, the budget refusal, the stricter epsilon, the lost-state rule."""

from __future__ import annotations

import math
import stat
from types import SimpleNamespace

import pytest

from fedmist.privacy.edge import EdgePrivacy, features_fingerprint, parse_budget, stricter
from fedmist.privacy.ledger import (
    LedgerError,
    Release,
    budget_refusal,
    cumulative,
    ledger_command,
    ledger_path,
    read_ledger,
    record_release,
)
from fedmist.worker.errors import ConfigurationError


def _release(data: str = "d1", features: str = "f1", eps: float = 2.0, r: int = 1176,
             label: float | None = None, job: str = "job-a") -> Release:
    return Release(data=data, features=features, epsilon=eps, r=r, label_epsilon=label, job=job, worker="edge1")


def test_same_data_takes_the_largest_epsilon_different_data_sums() -> None:
    same = [_release(eps=2.0, label=1.0), _release(eps=1.0, job="job-b", label=3.0),
            _release(eps=0.5, job="c", label=1.0)]
    total = cumulative(same)
    assert (total.per_feature, total.per_sample, total.labels) == (2.0, 2352.0, 3.0)
    mixed = [*same, _release(data="d2", eps=1.5, r=100, label=0.5), _release(features="f2", eps=0.25, r=400)]
    total = cumulative(mixed)
    # groups (d1,f1): max 2 -> 2352; (d2,f1): 1.5 -> 150; (d1,f2): 0.25 -> 100. Labels: d1 max(3, clear) = inf
    assert (total.releases, total.per_feature, total.per_sample) == (5, 3.75, 2602.0)
    assert math.isinf(total.labels)
    assert cumulative([_release(eps=math.inf)]).per_sample == math.inf


def test_ledger_appends_once_per_release_with_mode_0600(tmp_path) -> None:
    assert record_release(tmp_path, _release()) is True
    assert record_release(tmp_path, _release()) is False  # a resumed upload of the same release
    assert record_release(tmp_path, _release(job="job-b")) is True
    assert stat.S_IMODE(ledger_path(tmp_path).stat().st_mode) == 0o600
    entries = read_ledger(tmp_path)
    assert [(e.job, e.epsilon, e.r, e.label_epsilon) for e in entries] == [("job-a", 2.0, 1176, None),
                                                                          ("job-b", 2.0, 1176, None)]
    assert all(e.time.endswith("Z") for e in entries)
    record_release(tmp_path, _release(eps=math.inf, data="d3"))
    assert read_ledger(tmp_path)[-1].epsilon == math.inf
    ledger_path(tmp_path).write_text(ledger_path(tmp_path).read_text() + '{"data": "x"}\n')
    with pytest.raises(LedgerError, match=r"privacy-ledger.jsonl:4: not a ledger entry"):
        read_ledger(tmp_path)


def test_ledger_command_prints_entries_and_the_cumulative_guarantee(tmp_path, capsys) -> None:
    record_release(tmp_path, _release(eps=2.0, label=1.0))
    record_release(tmp_path, _release(eps=1.0, job="job-b", label=1.0))
    record_release(tmp_path, _release(data="d2", eps=1.5, r=100, label=0.5))
    assert ledger_command(str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "job-b" in out and "2352" in out
    assert out.splitlines()[-4:] == [
        "cumulative guarantee over 3 releases in 2 independent groups (same data and edge model: the largest "
        "epsilon; different: the sum):",
        "  epsilon per feature: 3.5",
        "  epsilon per sample:  2502",
        "  label epsilon:       1.5"]
    assert ledger_command(str(tmp_path / "missing")) == 2
    assert capsys.readouterr().err.startswith("error: ")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ledger_command(str(empty)) == 0
    assert capsys.readouterr().out.startswith("no releases recorded in ")


def test_budget_refusal_message_and_a_repeat_of_the_same_release_is_free() -> None:
    earlier = [_release(data="d0", eps=1.0, r=1000)]
    assert budget_refusal(earlier, _release(eps=2.0), 5000.0) is None
    assert budget_refusal(earlier, _release(eps=2.0), 3000.0) == (
        "privacy budget exceeded: this job would release 1176 features per sample at epsilon 2 (2352 per sample); "
        "with the 1 earlier releases in this edge's ledger (cumulative 1000 per sample) that makes 3352, over "
        "privacy_budget 3000; nothing was uploaded")
    # the same data again at a smaller epsilon costs nothing (coupled noise): 1000 + 2352 stays 3352
    assert budget_refusal([*earlier, _release(eps=2.0)], _release(eps=1.0, job="job-b"), 3352.0) is None


def test_the_stricter_epsilon_and_the_budget_parameter() -> None:
    assert stricter(2.0, math.inf) == 2.0 and stricter(math.inf, 0.5) == 0.5
    assert stricter(1.0, None) == 1.0 and stricter(None, 3.0) == 3.0 and stricter(None, None) is None
    assert parse_budget({"PRIVACY_BUDGET": "500"}) == 500.0 and parse_budget({}) is None
    for raw in ("abc", "0", "-3", "inf"):
        with pytest.raises(ConfigurationError, match=rf"^privacy_budget: must be a positive number \(got '{raw}'\)$"):
            parse_budget({"privacy_budget": raw})


def _ctx(tmp_path, eps: float | None, extra: dict[str, str] | None = None) -> SimpleNamespace:
    params = SimpleNamespace(epsilon=eps, label_epsilon=None, extra=extra or {})
    return SimpleNamespace(params=params, state_dir=tmp_path / "state", job="job-a", worker="edge1")


def test_a_trainer_without_its_own_epsilon_is_a_configuration_error(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="^epsilon: a MistNet trainer needs an epsilon of its own"):
        EdgePrivacy.from_context(_ctx(tmp_path, None))


def test_resume_needs_the_recorded_release_and_the_budget_refuses_before_recording(tmp_path) -> None:
    edge = EdgePrivacy.from_context(_ctx(tmp_path, 2.0, {"privacy_budget": "3000"}))
    seed, new = edge.seed()
    assert new and edge.seed() == (seed, False)
    assert stat.S_IMODE((tmp_path / "state" / "noise-seed").stat().st_mode) == 0o600
    assert edge.effective(math.inf, None) == (2.0, None) and edge.effective(0.5, 1.0) == (0.5, 1.0)
    with pytest.raises(ConfigurationError, match="state folder .* was lost"):
        edge.begin_release(_release(), resume_records=40, seed_is_new=True)
    with pytest.raises(ConfigurationError, match="its data, epsilon or edge model changed"):
        edge.begin_release(_release(), resume_records=40, seed_is_new=False)
    edge.begin_release(_release(), resume_records=0, seed_is_new=True)
    edge.begin_release(_release(), resume_records=40, seed_is_new=False)  # the recorded release resumes
    edge.begin_release(_release(), resume_records=80, seed_is_new=True)  # ... also after a reconnect in-process
    assert len(read_ledger(tmp_path / "state")) == 1
    with pytest.raises(ConfigurationError, match="^privacy budget exceeded: .* makes 3552, over privacy_budget 3000"):
        edge.begin_release(_release(data="d2", r=600), resume_records=0, seed_is_new=False)
    assert len(read_ledger(tmp_path / "state")) == 1  # a refused release is not in the ledger


def test_features_fingerprint_names_the_edge_model() -> None:
    base = features_fingerprint("lenet5", 3, 10, "classify", 0, b"weights")
    assert base == features_fingerprint("lenet5", 3, 10, "classify", 0, memoryview(b"weights"))
    assert len({base, features_fingerprint("lenet5", 4, 10, "classify", 0, b"weights"),
                features_fingerprint("lenet5", 3, 10, "classify", 0, b"weightz")}) == 3
