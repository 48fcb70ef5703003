"""``fedmist``: the command line. A thin layer: parse arguments, call the library, turn errors into one line.

Commands are grouped by what they act on, one module each, and each module's ``add_commands(sub)`` registers
its subcommands; :data:`GROUPS` is the order they appear in ``fedmist --help``:

- :mod:`fedmist.cli.jobs`: ``run``, ``validate``, ``report``, ``worker`` (a job, or one of its workers)
- :mod:`fedmist.cli.simulate`: ``simulate`` (a FedAvg-family job over N virtual clients)
- :mod:`fedmist.cli.data`: ``data split|export|synth-detection`` (datasets)
- :mod:`fedmist.cli.models`: ``pretrain``, ``pretrain-yolo``, ``predict`` (models)
- :mod:`fedmist.cli.audit`: ``audit`` (attacks on what a MistNet job uploads)
- :mod:`fedmist.cli.privacy`: ``privacy ledger DIR`` (an edge's own privacy ledger)
- :mod:`fedmist.cli.cluster`: ``render``, ``operator`` (Kubernetes)

Nothing else in fedmist imports this package (tests/test_layers.py checks it): it sits on top of the library,
and ``fedmist`` (the script) and ``python -m fedmist`` are its only callers. Workers are started through
:func:`fedmist.worker.main.run_worker`, never through here.

Exit codes: 0 success, 1 the job (or command) failed, 2 bad input (manifest, arguments, data paths).
Heavy modules (torch) are imported inside the commands that need them, so ``fedmist --help`` and manifest
errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from fedmist import __version__
from fedmist.cli import audit, cluster, data, jobs, models, privacy, simulate
from fedmist.cli.common import Subparsers, UsageError

__all__ = ["GROUPS", "UsageError", "build_parser", "main"]

# (title, registrar) in the order of `fedmist --help`; a new group is a module with add_commands(sub)
GROUPS: tuple[tuple[str, Callable[[Subparsers], None]], ...] = (
    ("jobs", jobs.add_commands),
    ("simulate", simulate.add_commands),
    ("data", data.add_commands),
    ("models", models.add_commands),
    ("audit", audit.add_commands),
    ("privacy", privacy.add_commands),
    ("cluster", cluster.add_commands),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedmist",
        description="Federated learning between edge devices and a cloud (MistNet and the FedAvg family), "
                    "from Sedna-style manifests.",
        epilog="Each command has its own --help. Exit codes: 0 success, 1 the job failed, 2 bad input.")
    parser.add_argument("--version", action="version", version=f"fedmist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for _title, add_commands in GROUPS:
        add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from fedmist.spec.errors import ManifestError

    try:
        return args.func(args)
    except (ManifestError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # a path that cannot be read or written: one line, not a traceback
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
