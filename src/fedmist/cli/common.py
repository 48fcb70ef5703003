"""What every command group of the CLI shares: the usage error, the help format, the job arguments, the epoch
printer. Nothing heavy is imported here, so ``fedmist --help`` answers at once."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

Command = Callable[[argparse.Namespace], int]
Subparsers = argparse._SubParsersAction  # what ``add_subparsers`` returns; argparse has no public name for it
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist (DESIGN section 8)


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit code 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, unless the help already says it or there is none to show
    (a flag, a required option, an unset default): a user sees what a command does without reading code."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == argparse.SUPPRESS or default in ("", [])
        if action.option_strings and not action.required and "default" not in text.lower() and not unset:
            text = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        return text


def add_command(sub: Subparsers, name: str, func: Command, summary: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand with its one-line ``summary`` (its help line and description) and the default-showing help
    format."""
    parser = sub.add_parser(name, help=summary, description=summary[:1].upper() + summary[1:] + ".",
                            formatter_class=HelpFormatter, **kwargs)
    parser.set_defaults(func=func)
    return parser


def add_job_args(p: argparse.ArgumentParser) -> None:
    """``-f FILE... [--path-map SRC=DST...] [--job NAME]``: which job, for every command that reads manifests."""
    p.add_argument("-f", "--file", action="append", required=True, metavar="FILE",
                   help="manifest file (multi-document YAML); repeat for several files")
    p.add_argument("--path-map", action="append", default=[], metavar="SRC=DST",
                   help="re-root host paths in the manifests, e.g. /data=./data (repeatable)")
    p.add_argument("--job", help="which FederatedLearningJob to use when the files define several")


def load_job(args: argparse.Namespace):
    """The job named by :func:`add_job_args`' options, its warnings printed (see :func:`fedmist.api.load_job`)."""
    from fedmist.api import load_job as load

    return load(args.file, path_map=args.path_map, job=args.job,
                warn=lambda line: print(f"warning: {line}", file=sys.stderr))


def quiet_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning: several fedmist processes share few cores, and spinning
    threads of one process starve the others (measured: 8x slower cloud training on 2 shared cores).
    Must run before torch is imported; a value the user set wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def print_epoch(epochs: int) -> Callable[[int, dict], None]:
    """An ``on_epoch`` callback that prints ``pretrain epoch k/N: loss ..., accuracy ...`` to stderr."""

    def on_epoch(epoch: int, stats: dict) -> None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in stats.items() if isinstance(v, float))
        print(f"pretrain epoch {epoch}/{epochs}: {shown}", file=sys.stderr)

    return on_epoch
