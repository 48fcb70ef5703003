"""fedmist.cli.common: help lines show defaults only where useful; job arguments; the epoch printer."""

from __future__ import annotations

import argparse
import os

import pytest

from fedmist.cli.common import HelpFormatter, add_command, add_job_args, print_epoch, quiet_openmp


def _parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="fedmist")
    sub = root.add_subparsers()
    p = add_command(sub, "run", lambda args: 0, "run a job locally")
    p.add_argument("--rounds", type=int, default=3, help="how many rounds")
    p.add_argument("--port", type=int, default=7363, help="port (default 7363)")
    p.add_argument("--flag", action="store_true", help="a flag")
    p.add_argument("--name", default="", help="a name")
    p.add_argument("--bare", default=5)
    add_job_args(p)
    return root


def test_help_shows_defaults_only_where_they_add_information() -> None:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    run = sub.choices["run"]
    assert run.description == "Run a job locally."
    assert isinstance(run.formatter_class(prog="x"), HelpFormatter)
    text = " ".join(run.format_help().split())
    assert "how many rounds (default: 3)" in text
    assert "port (default 7363)" in text and "(default: 7363)" not in text
    assert "a flag (default" not in text and "a name (default" not in text
    bare = next(a for a in run._actions if a.dest == "bare")  # argparse prints no help line without a help
    assert HelpFormatter("x")._get_help_string(bare) == "default: %(default)s"
    assert "(default: [])" not in text  # --path-map's empty list


def test_job_arguments_collect_repeated_files_and_maps() -> None:
    args = _parser().parse_args(["run", "-f", "a.yaml", "--file", "b.yaml", "--path-map", "/d=./d", "--job", "j"])
    assert (args.file, args.path_map, args.job, args.func(args)) == (["a.yaml", "b.yaml"], ["/d=./d"], "j", 0)
    assert _parser().parse_args(["run", "-f", "a.yaml"]).path_map == []


def test_a_job_command_needs_a_file(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["run"])
    assert info.value.code == 2
    assert "the following arguments are required: -f/--file" in capsys.readouterr().err


def test_the_epoch_printer_shows_float_stats_only(capsys) -> None:
    print_epoch(10)(2, {"loss": 0.123456, "accuracy": 0.5, "samples": 100})
    assert capsys.readouterr().err == "pretrain epoch 2/10: loss 0.1235, accuracy 0.5000\n"


def test_openmp_waits_passively_unless_the_user_chose(monkeypatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    quiet_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    quiet_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
