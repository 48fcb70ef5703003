"""fedmist.worker.main: the algorithm picks the runtime, and every failure becomes an exit code and a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedmist.worker import main as worker_main
from fedmist.worker.errors import ConfigurationError, JobFailure


def test_mistnet_has_its_own_runtime_and_everything_else_is_the_round_engine() -> None:
    assert worker_main.family_of(" MistNet ") == "mistnet"
    assert worker_main.family_of("fedavg") == worker_main.family_of("") == worker_main.family_of("pkg:S") == "rounds"
    assert set(worker_main._runners()) == {(role, family) for role in ("aggregator", "trainer")
                                           for family in ("mistnet", "rounds", "mistnet-detect", "rounds-detect")}


@pytest.fixture
def env(monkeypatch, tmp_path: Path) -> Path:
    status = tmp_path / "status.json"
    for key, value in {"JOB_NAME": "j", "WORKER_NAME": "agg", "FEDMIST_STATUS_FILE": str(status),
                       "FEDMIST_STATE_DIR": str(tmp_path / "state"), "aggregation_algorithm": "fedavg"}.items():
        monkeypatch.setenv(key, value)
    return status


def _with_runner(monkeypatch, run: Any) -> None:
    monkeypatch.setattr(worker_main, "_runners", lambda: {("aggregator", "rounds"): lambda: run})


def _raise(exc: Exception):
    def run(ctx: Any) -> dict[str, Any]:
        raise exc
    return run


@pytest.mark.parametrize("exc, code, reason", [
    (ConfigurationError("epsilon: bad"), 2, "epsilon: bad"),
    (JobFailure("aggregator gone"), 1, "aggregator gone"),
    (RuntimeError("boom"), 1, "internal error: RuntimeError: boom"),
])
def test_failures_become_exit_codes_and_a_failed_report(monkeypatch, env: Path, exc, code, reason) -> None:
    _with_runner(monkeypatch, _raise(exc))
    assert worker_main.run_worker("aggregator") == code
    report = json.loads(env.read_text())
    assert (report["phase"], report["error"], report["worker"], report["role"]) == ("Failed", reason, "agg",
                                                                                    "aggregator")


def test_success_is_exit_zero_and_the_context_reaches_the_runtime(monkeypatch, env: Path) -> None:
    seen: list[Any] = []
    _with_runner(monkeypatch, lambda ctx: seen.append(ctx) or {"accuracy": 0.5, "history": []})
    assert worker_main.run_worker("aggregator", ["--ignored"]) == 0
    assert (seen[0].job, seen[0].worker, seen[0].role) == ("j", "agg", "aggregator")
    assert not env.exists()  # the runtime writes its own report; nothing failed


def test_a_role_without_a_runtime_is_a_configuration_failure(monkeypatch, env: Path) -> None:
    monkeypatch.setattr(worker_main, "_runners", lambda: {})
    assert worker_main.run_worker("aggregator") == 2
    assert json.loads(env.read_text())["error"] == "no aggregator runtime for aggregation_algorithm='fedavg' yet"


def test_a_bad_env_contract_exits_2_before_any_runtime(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JOB_NAME", raising=False)
    monkeypatch.setattr(worker_main, "_runners", lambda: pytest.fail("runtime looked up"))
    assert worker_main.run_worker("trainer") == 2
