"""Every command of ``fedmist`` explains itself: a one-line help in ``fedmist --help``, help text on every
argument, and the default of every option that has one shown in its ``--help``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from fedmist.cli import build_parser


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(``"data split"``, its one-line help, its parser) for every command and nested action."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", helps.get(name) or "", sub
                yield from commands(sub, f"{prefix}{name} ")


def test_every_command_has_a_one_line_help_and_every_argument_a_help_with_its_default() -> None:
    problems = []
    found = list(commands(build_parser()))
    assert {"run", "validate", "report", "worker", "data split", "data export", "data synth-detection", "pretrain",
            "pretrain-yolo", "predict", "audit", "render", "operator"} <= {name for name, _, _ in found}
    for name, summary, parser in found:
        if not summary.strip() or "\n" in summary:
            problems.append(f"fedmist {name}: no one-line help")
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                problems.append(f"fedmist {name} {action.dest}: no help")
            unset = action.default is None or action.default is False or action.default in ("", [])
            if action.option_strings and not action.required and not unset and f"default: {action.default}" not in text:
                problems.append(f"fedmist {name} {action.option_strings[0]}: default {action.default!r} not shown")
    assert not problems, "\n".join(problems)
