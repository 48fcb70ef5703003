"""Commands that act on a job: ``run``, ``validate``, ``report`` and ``worker`` (what a container runs)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fedmist.cli.common import Subparsers, add_command, add_job_args, load_job, quiet_openmp
from fedmist.cli.links import add_link_args, network_for

DEFAULT_TIMEOUT_S = 24 * 3600.0


def cmd_run(args: argparse.Namespace) -> int:
    from fedmist.launch.spawn import Zygote

    # Started before the manifests are even read: its torch import (the longest part of a job's start-up)
    # runs on one core while this process loads the launcher on the other.
    quiet_openmp()
    zygote = Zygote() if not args.no_prefork and hasattr(os, "fork") else None
    try:
        job = load_job(args)
        with network_for(args, job) as network:
            result = job.run(args.workdir, timeout=args.timeout, progress=not args.no_progress, tls=not args.no_tls,
                             max_restarts=args.max_restarts, check=False,
                             prefork=zygote if zygote is not None else not args.no_prefork, network=network)
    finally:
        if zygote is not None:
            zygote.close()  # the job has closed it already, unless it never started
    return result.exit_code


def cmd_validate(args: argparse.Namespace) -> int:
    print(load_job(args).describe())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from fedmist.launch.report import write_report

    print(f"wrote {write_report(Path(args.workdir), Path(args.out) if args.out else None)}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from fedmist.launch.netlab.nsenter import enter_from_env

    quiet_openmp()
    enter_from_env()  # behind an emulated link (fedmist run --topology): before any thread or socket exists
    from fedmist.worker.main import run_worker

    return run_worker("aggregator" if args.role == "aggregate" else "trainer", args.args)


def add_commands(sub: Subparsers) -> None:
    """Register ``run``, ``validate``, ``report`` and ``worker``."""
    run = add_command(sub, "run", cmd_run, "run a job on this machine (aggregator + one process per training worker)")
    add_job_args(run)
    run.add_argument("--workdir", help="where status.json, logs and state go (default runs/<job name>)")
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="fail the job after this many seconds")
    run.add_argument("--no-progress", action="store_true", help="no live progress, only the final summary")
    run.add_argument("--max-restarts", type=int, default=3,
                     help="restarts per failed worker (restartPolicy OnFailure, exponential backoff from 1 s)")
    run.add_argument("--no-tls", action="store_true",
                     help="plain ws instead of wss with a per-job CA (frames are still authenticated by MAC)")
    run.add_argument("--no-prefork", action="store_true",
                     help="start each worker as a fresh `python -m fedmist worker ...` (as a container does) "
                          "instead of forking it from a process that imported torch once (faster start)")
    add_link_args(run)

    validate = add_command(sub, "validate", cmd_validate, "check manifests and print what would run")
    add_job_args(validate)

    report = add_command(sub, "report", cmd_report, "plot a job's metric history (status.json) to a PNG")
    report.add_argument("workdir", help="the job's work folder (holds status.json)")
    report.add_argument("--out", help="PNG path (default <workdir>/report.png)")

    worker = add_command(sub, "worker", cmd_worker, "run one worker from the env contract (what a container runs)")
    worker.add_argument("role", choices=["aggregate", "train"],
                        help="aggregate: the aggregator (cloud); train: a training worker (edge)")
    worker.add_argument("args", nargs=argparse.REMAINDER, help="container args (recorded, not interpreted)")
