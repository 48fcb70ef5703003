"""Restarts and reconnects as the user sees them: progress lines, status entries, debug port overrides."""

from __future__ import annotations

import pytest

from fedmist.launch.local import _port_override
from fedmist.launch.progress import ProgressView
from fedmist.launch.status import JobStatus, ProcessState


def test_progress_lines_say_a_worker_was_restarted():
    view = ProgressView("job", enabled=False)
    agg = ProcessState("cloud", "aggregator", pid=12, restarts=1)
    assert view._line(agg, {"stage": "training", "epoch": 3, "epochs": 4}) == "training epoch 3/4 (restart 1)"
    crashed = ProcessState("edge1", "trainer", pid=13, exit_code=-9, restarts=2)
    assert view._line(crashed, {}) == "exited with code -9 (restart 2)"
    assert view._line(ProcessState("edge2", "trainer", pid=14), {"stage": "reconnecting"}) == "reconnecting"


def test_status_shows_restarts_and_the_aggregators_count_of_connections():
    processes = [ProcessState("cloud", "aggregator", pid=1, restarts=1), ProcessState("edge3", "trainer", pid=2, restarts=1)]
    reports = {"cloud": {"workers": {"edge3": {"connections": 2, "phase": "Reported"}}}, "edge3": {"sessions": 1}}
    status = JobStatus("job").to_dict(processes, reports)
    assert status["aggregator"]["restarts"] == 1
    assert status["workers"]["edge3"]["restarts"] == 1
    assert status["workers"]["edge3"]["connections"] == 2 and status["workers"]["edge3"]["sessions"] == 1


def test_debug_port_overrides_are_validated(monkeypatch):
    monkeypatch.delenv("FEDMIST_AGG_PORT", raising=False)
    assert _port_override("FEDMIST_AGG_PORT") is None
    monkeypatch.setenv("FEDMIST_AGG_PORT", "7400")
    assert _port_override("FEDMIST_AGG_PORT") == 7400
    monkeypatch.setenv("FEDMIST_AGG_PORT", "70000")
    with pytest.raises(ValueError, match=r"^FEDMIST_AGG_PORT must be a TCP port number, got '70000'$"):
        _port_override("FEDMIST_AGG_PORT")
