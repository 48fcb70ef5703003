"""Commands about an edge's own privacy: ``privacy ledger DIR`` (every release the edge made, and what they add up to)."""

from __future__ import annotations

import argparse

from fedmist.cli.common import Subparsers, add_command


def cmd_privacy_ledger(args: argparse.Namespace) -> int:
    from fedmist.privacy.ledger import ledger_command

    return ledger_command(args.state_dir)


def add_commands(sub: Subparsers) -> None:
    """Register ``privacy`` and its actions."""
    privacy = sub.add_parser("privacy", help="an edge's privacy ledger (what it has released, and the total)",
                             description="Inspect an edge's own privacy records.")
    actions = privacy.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    ledger = add_command(actions, "ledger", cmd_privacy_ledger,
                         "print an edge's releases and the cumulative guarantee (nested per data, summed across)")
    ledger.add_argument("state_dir", metavar="DIR",
                        help="the edge's state folder (holds noise-seed and privacy-ledger.jsonl)")
