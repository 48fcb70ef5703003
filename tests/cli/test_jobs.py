"""fedmist.cli.jobs: ``worker``, ``report``, ``validate`` and ``run``'s options reach the library as given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedmist.cli import build_parser, main
from fedmist.cli.jobs import DEFAULT_TIMEOUT_S

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist-mistnet" / "job.yaml"


def test_worker_maps_the_container_role_and_keeps_its_args(monkeypatch) -> None:
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr("fedmist.worker.main.run_worker", lambda role, args: calls.append((role, args)) or 7)
    assert main(["worker", "aggregate", "--x", "1"]) == 7
    assert main(["worker", "train"]) == 7
    assert calls == [("aggregator", ["--x", "1"]), ("trainer", [])]


def test_report_prints_where_it_wrote(monkeypatch, capsys) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr("fedmist.launch.report.write_report",
                        lambda workdir, out: calls.append((workdir, out)) or Path("/w/report.png"))
    assert main(["report", "/w"]) == 0 and main(["report", "/w", "--out", "/x.png"]) == 0
    assert calls == [(Path("/w"), None), (Path("/w"), Path("/x.png"))]
    assert capsys.readouterr().out == "wrote /w/report.png\nwrote /w/report.png\n"


def test_run_defaults() -> None:
    args = build_parser().parse_args(["run", "-f", "job.yaml"])
    assert (args.timeout, args.max_restarts, args.no_tls, args.no_prefork, args.workdir) == \
        (DEFAULT_TIMEOUT_S, 3, False, False, None)
    assert DEFAULT_TIMEOUT_S == 86400.0


def test_validate_describes_the_example_job_and_a_missing_file_is_one_line(capsys, tmp_path) -> None:
    assert main(["validate", "-f", str(EXAMPLE)]) == 0
    assert "mnist-mistnet" in capsys.readouterr().out
    missing = tmp_path / "none.yaml"
    assert main(["validate", "-f", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {missing}: cannot read manifest: ") and err.count("\n") == 1
