"""``fedmist run --topology FILE`` / ``--link SPEC``: run the job's workers on their own network hosts behind
emulated links (fedmist.launch.netlab; the file format is in its topology module and docs/DESIGN.md section 7)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any


def add_link_args(run: argparse.ArgumentParser) -> None:
    group = run.add_mutually_exclusive_group()
    group.add_argument("--topology", metavar="FILE",
                       help="put each worker in its own network namespace behind the link FILE describes "
                            "(rates, delay, loss, outages per edge; needs root; see docs/DESIGN.md section 7.1)")
    group.add_argument("--link", metavar="[EDGE:]SPEC", action="append",
                       help="every edge's link, e.g. up=1mbit,down=10mbit,delay=50ms,loss=1%%, or with EDGE: "
                            "one edge's (repeatable; a --topology without a file; needs root)")


@contextlib.contextmanager
def network_for(args: argparse.Namespace, job: Any) -> Iterator[Any]:
    """The emulated network the flags ask for, up for the ``with`` block and removed after it (also on an
    error or a signal); ``None`` when neither flag is given. Topology errors are ``ValueError`` (exit 2)."""
    if not (args.topology or args.link):
        yield None
        return
    from fedmist.launch.netlab.hosts import Netlab, NetlabError
    from fedmist.launch.netlab.topology import load_topology, topology_from_flags

    topology = load_topology(args.topology) if args.topology else topology_from_flags(args.link)
    trainers = [worker.name for worker in job.resolved.trainers]
    try:
        lab = Netlab(topology, trainers)
        with lab:
            yield lab
    except NetlabError as exc:
        raise ValueError(f"--topology: {exc}") from None
