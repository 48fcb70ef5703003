"""fedmist.cli.privacy: ``privacy ledger DIR`` hands DIR to the ledger command and returns its exit code."""

from __future__ import annotations

import pytest

from fedmist.cli import main


def test_ledger_passes_the_state_folder(monkeypatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr("fedmist.privacy.ledger.ledger_command", lambda state_dir: seen.append(state_dir) or 3)
    assert main(["privacy", "ledger", "/var/lib/edge1"]) == 3
    assert seen == ["/var/lib/edge1"]


def test_an_action_is_required(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["privacy"])
    assert info.value.code == 2
    assert "the following arguments are required: ACTION" in capsys.readouterr().err


def test_the_group_registers_on_its_own(monkeypatch) -> None:
    import argparse

    from fedmist.cli import privacy as privacy_cli

    parser = argparse.ArgumentParser()
    privacy_cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["privacy", "ledger", "DIR"])
    assert (args.privacy_command, args.state_dir, args.func) == ("ledger", "DIR", privacy_cli.cmd_privacy_ledger)
