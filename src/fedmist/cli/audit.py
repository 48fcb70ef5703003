"""``fedmist audit``: attack a MistNet job's uploads; its arguments and its entry point (torch is imported only
when it runs; the attacks themselves are the :mod:`fedmist.audit` package)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fedmist.cli.common import Subparsers, add_command, add_job_args, load_job, quiet_openmp
from fedmist.spec.params import parse_epsilon

DEFAULT_EPSILONS = "inf,8,4,2,1,0.5"


def parse_epsilon_list(text: str) -> list[float]:
    """``"inf,8,2"`` -> ``[inf, 8.0, 2.0]``; anything else raises ValueError naming the bad item."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise ValueError(f"--epsilons {text!r}: expected a comma-separated list like {DEFAULT_EPSILONS}")
    out: list[float] = []
    for item in items:
        try:
            out.append(parse_epsilon(item))  # the job's one rule (spec/params.py)
        except ValueError as exc:
            raise ValueError(f"--epsilons {text!r}: {item!r} {exc}") from None
    if len(set(out)) != len(out):
        raise ValueError(f"--epsilons {text!r}: an epsilon is listed twice")
    return out


def add_commands(sub: Subparsers) -> None:
    """Register ``audit``."""
    p = add_command(sub, "audit", cmd_audit, "attack a MistNet job's uploads at several epsilons; write the "
                                             "privacy-utility frontier (table, JSON, PNG)")
    add_job_args(p)
    p.add_argument("--epsilons", default=DEFAULT_EPSILONS, help="per-feature epsilons (default: %(default)s)")
    p.add_argument("--out", help="output folder (default runs/<job>/audit)")
    p.add_argument("--public", help="the attacker's auxiliary data, an IDX folder (default: <edge data>/../public)")
    p.add_argument("--victims", type=int, default=1000, help="edge images attacked by the decoder")
    p.add_argument("--likelihood-victims", type=int, default=200, help="edge images attacked by likelihood ascent")
    p.add_argument("--members", type=int, default=2000, help="members and non-members for membership inference")
    p.add_argument("--decoder-epochs", type=int, default=2,
                   help="decoder epochs at the largest epsilon; each smaller one fine-tunes the last for 1")
    p.add_argument("--likelihood-steps", type=int, default=150, help="gradient steps of the likelihood attack")
    p.add_argument("--judge-epochs", type=int, default=3, help="epochs of the classifier that judges reconstructions")
    p.add_argument("--utility-epochs", type=int, default=None,
                   help="cloud training epochs for the job's accuracy (default: the job's epochs)")
    p.add_argument("--narrow", type=int, default=0, metavar="C",
                   help="also audit a narrower cut: a 1x1 bottleneck to C channels trained on public data")
    p.add_argument("--label-epsilon", default=None,
                   help="also audit k-ary randomized response on labels at this epsilon (default: the job's)")
    p.add_argument("--ssim-below", type=float, default=0.3, help="'unrecognizable' threshold for the verdict")
    p.add_argument("--min-accuracy", type=float, default=0.85, help="accuracy the job must keep in the verdict")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def cmd_audit(args: argparse.Namespace) -> int:
    quiet_openmp()
    epsilons = parse_epsilon_list(args.epsilons)
    label_eps = parse_epsilon_list(args.label_epsilon)[0] if args.label_epsilon else None
    for name in ("victims", "likelihood_victims", "members", "decoder_epochs", "likelihood_steps", "judge_epochs",
                 "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    job = load_job(args)
    started, cpu_started = time.perf_counter(), time.process_time()
    from fedmist.audit.decoder import DecoderConfig
    from fedmist.audit.frontier import choose_epsilon, write_frontier
    from fedmist.audit.job_data import load_audit_data
    from fedmist.audit.likelihood import LikelihoodConfig
    from fedmist.audit.runner import AuditConfig, run_audit

    data = load_audit_data(job.resolved, args.public)
    if label_eps is None:
        label_eps = data.label_epsilon
    config = AuditConfig(
        epsilons=epsilons, victims=args.victims, likelihood_victims=args.likelihood_victims, members=args.members,
        decoder=DecoderConfig(epochs=args.decoder_epochs, seed=args.seed),
        likelihood=LikelihoodConfig(steps=args.likelihood_steps), judge_epochs=args.judge_epochs,
        utility_epochs=args.utility_epochs, narrow_channels=args.narrow, label_epsilon=label_eps,
        threads=args.threads, seed=args.seed)
    result = run_audit(data, config, log=lambda line: print(line, file=sys.stderr, flush=True))
    result["job"] = job.name
    result["choice"] = choose_epsilon(result, ssim_below=args.ssim_below, min_accuracy=args.min_accuracy)
    result["total_wall_s"] = round(time.perf_counter() - started, 1)
    # CPU seconds say what the run costs on a quiet machine when the wall time was measured on a busy one
    result["total_cpu_s"] = round(time.process_time() - cpu_started, 1)
    out = Path(args.out) if args.out else Path("runs") / job.name / "audit"
    paths = write_frontier(result, out)
    print((out / "frontier.md").read_text(), end="")
    print(f"audit of {job.name}: {len(result['rows'])} rows in {result['total_wall_s']:.1f} s "
          f"({result['total_cpu_s']:.1f} CPU s, {args.threads} threads); wrote "
          + ", ".join(str(p) for p in paths.values()))
    return 0
