"""`fedmist report` turns a status.json history into a PNG, and says why when there is nothing to plot."""

import json

import pytest

from fedmist.launch.report import write_report


def test_report_writes_png_for_epoch_history(tmp_path):
    history = [{"epoch": i, "loss": 1.0 / i, "test_accuracy": 0.5 + i / 20, "seconds": 1.0} for i in range(1, 5)]
    (tmp_path / "status.json").write_text(json.dumps({"job": "j", "phase": "Succeeded",
                                                      "metrics": {"history": history}}))
    png = write_report(tmp_path)
    assert png == tmp_path / "report.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_history_is_a_clear_error(tmp_path):
    (tmp_path / "status.json").write_text(json.dumps({"job": "j", "metrics": {}}))
    with pytest.raises(ValueError, match="has no per-epoch or per-round history"):
        write_report(tmp_path)
    with pytest.raises(FileNotFoundError, match="no readable status.json"):
        write_report(tmp_path / "missing")
