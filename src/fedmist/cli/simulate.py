"""``fedmist simulate``: a job's FedAvg-family rounds over N virtual clients on a bounded pool of processes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fedmist.cli.common import (
    HelpFormatter,
    Subparsers,
    UsageError,
    add_command,
    add_job_args,
    load_job,
    quiet_openmp,
)

EPILOG = """\
The job's aggregator env (aggregation_algorithm, exit_round, fraction_fit, min_fit_clients, mu, ...) and its
trainers' local settings (epochs, batch_size, learning_rate) apply as in `fedmist run`; --set overrides any
of them. The data partitioned over the clients is the job's trainers' datasets, concatenated (or --data).
Results land in --workdir as in `fedmist run`: status.json (history per round), report.png, and the model at
the job's output Model url. Example:

  fedmist simulate -f examples/mnist-fedavg/job.yaml --path-map /data=demo/data --path-map /model=demo/model \\
      --clients 1000 --partition dirichlet --alpha 0.1 --set fraction_fit=0.1 --set exit_round=20

Simulate a manifest before deploying it (the same clients each round, the same accuracy, the same model as
`fedmist run` of it gives):
  fedmist simulate -f job.yaml --path-map /data=demo/data --path-map /model=demo/model --partition job

On a Ray cluster (pip install 'fedmist[ray]' on every node; data paths must exist on every node):
  fedmist simulate ... --ray-address HEAD_IP:6379
"""


class _Formatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown (fedmist's rule), the epilog's example kept as written."""


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _data(text: str) -> tuple[str, str]:
    url, _, fmt = text.partition(":")
    return (text, "idx") if not fmt or "/" in fmt else (url, fmt)


def cmd_simulate(args: argparse.Namespace) -> int:
    quiet_openmp()
    from fedmist.simulate.engine import SimulationOptions, run_simulation
    from fedmist.simulate.pool import SimulationError

    job = load_job(args)
    resolved = job.resolved
    if resolved.params_for(resolved.aggregator).aggregation_algorithm == "mistnet":
        raise UsageError("fedmist simulate runs FedAvg-family jobs; this job's aggregation_algorithm is mistnet")
    if args.partition == "job":
        if args.clients is not None and args.clients != len(resolved.trainers):
            raise UsageError(f"--partition job makes one client per trainer ({len(resolved.trainers)} in this job); "
                             f"drop --clients {args.clients}")
        args.clients = len(resolved.trainers)
    elif args.clients is None:
        raise UsageError(f"--partition {args.partition} needs --clients N")
    if args.clients < 1 or (args.workers is not None and args.workers < 1):
        raise UsageError("--clients and --workers must be >= 1")
    workdir = Path(args.workdir or Path("runs") / f"{resolved.name}-simulation")
    options = SimulationOptions(
        clients=args.clients, workdir=workdir, scheme=args.partition, alpha=args.alpha,
        shards_per_client=args.shards_per_client, workers=args.workers, ray_address=args.ray_address,
        data=tuple(_data(d) for d in args.data), overrides=dict(args.set))
    try:
        status = run_simulation(resolved, options)
    except SimulationError as exc:
        print(f"error: simulation failed: {exc}", file=sys.stderr)
        return 1
    from fedmist.launch.report import write_report

    metrics = status.get("metrics", {})
    plot = write_report(workdir) if metrics.get("history") else None
    print(f"{status['phase']}: {len(metrics.get('history', []))} rounds, accuracy {metrics.get('accuracy')}, "
          f"status {workdir / 'status.json'}" + (f", plot {plot}" if plot else ""))
    return 0 if status["phase"] == "Succeeded" else 1


def add_commands(sub: Subparsers) -> None:
    """Register ``simulate``."""
    p = add_command(sub, "simulate", cmd_simulate,
                    "simulate a FedAvg-family job with N virtual clients on a bounded pool of processes (or Ray)",
                    epilog=EPILOG)
    p.formatter_class = _Formatter
    add_job_args(p)
    p.add_argument("--clients", type=int, default=None,
                   help="number of virtual clients (required, except with --partition job)")
    p.add_argument("--partition", choices=["iid", "dirichlet", "shards", "job"], default="iid",
                   help="iid; dirichlet: label mix per client from Dirichlet(--alpha); shards: by-label shards; "
                        "job: each of the job's trainers is one client, named as its worker, with its own env and "
                        "exactly its dataset -- the real job's computation, without processes or sockets")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (smaller: more skewed)")
    p.add_argument("--shards-per-client", type=int, default=2, help="label shards per client (--partition shards)")
    p.add_argument("--workers", type=int, default=None,
                   help=f"pool processes (default: one per core, {os.cpu_count()} here; with --partition job, one "
                        "per trainer's share of the cores, as `fedmist run` gives it; with Ray: the cluster's CPUs)")
    p.add_argument("--ray-address", help="run the pool as Ray actors on this cluster (HOST:PORT of its head)")
    p.add_argument("--data", action="append", default=[], metavar="URL[:FORMAT]",
                   help="dataset to partition instead of the trainers' (repeatable; format idx by default)")
    p.add_argument("--set", action="append", default=[], type=_key_value, metavar="NAME=VALUE",
                   help="a job parameter over the manifest's, e.g. fraction_fit=0.1, exit_round=20 (repeatable)")
    p.add_argument("--workdir", help="where status.json and report.png go (default runs/<job>-simulation)")
