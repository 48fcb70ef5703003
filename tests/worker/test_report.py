"""fedmist.worker.report: the worker's status file is throttled, forced writes always land, failures keep data."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fedmist.worker.report import Reporter, peak_rss_mb, record_failure


def test_writes_are_throttled_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    reporter = Reporter(path, "edge1", "trainer", interval=3600.0)
    reporter.update(force=True, phase="Running")
    first = json.loads(path.read_text())
    assert {k: first[k] for k in ("worker", "role", "pid", "phase")} == {
        "worker": "edge1", "role": "trainer", "pid": os.getpid(), "phase": "Running"}
    assert first["peak_rss_mb"] > 0 and isinstance(first["updated"], float)
    reporter.update(stage="uploading")  # within the interval: kept in memory only
    assert "stage" not in json.loads(path.read_text()) and reporter.data["stage"] == "uploading"
    reporter.flush()
    assert json.loads(path.read_text())["stage"] == "uploading"


def test_a_zero_interval_writes_every_update_and_no_path_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    reporter = Reporter(path, "agg", "aggregator", interval=0.0)
    reporter.update(epoch=1)
    assert json.loads(path.read_text())["epoch"] == 1
    silent = Reporter(None, "agg", "aggregator")
    silent.update(force=True, epoch=2)
    assert silent.data["epoch"] == 2 and list(tmp_path.iterdir()) == [path]


def test_a_failure_keeps_what_was_reported_and_survives_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    Reporter(path, "edge1", "trainer").update(force=True, phase="Running", samples=7)
    record_failure(path, "edge1", "trainer", "aggregator gone")
    data = json.loads(path.read_text())
    assert (data["phase"], data["error"], data["samples"]) == ("Failed", "aggregator gone", 7)
    path.write_text("{not json")
    record_failure(path, "edge2", "trainer", "boom")
    data = json.loads(path.read_text())
    assert {k: data[k] for k in ("worker", "role", "pid", "phase", "error")} == {
        "worker": "edge2", "role": "trainer", "pid": os.getpid(), "phase": "Failed", "error": "boom"}
    record_failure(None, "edge3", "trainer", "nowhere")  # no status file: nothing to do, no error


def test_peak_rss_is_in_mib_with_one_decimal() -> None:
    value = peak_rss_mb()
    assert 1.0 < value < 1024 * 1024 and round(value, 1) == value
