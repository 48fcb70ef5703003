"""The simulation's rounds: the job's strategy, sampler and test, over a pool of workers training virtual clients.

What is shared with a real job, so a simulation measures the algorithm a deployment runs: the strategy is built
by the same registry from the same env (``strategy.build_strategy``), each round is drawn by the same
:class:`~fedmist.strategy.sampling.ClientSampler`, updates are folded one at a time through the strategy's
streaming ``begin_round``/``accumulate``/``finish_round``, local training is ``fedmist.training``'s, and the
global model is tested by the job trainer's ``evaluate_global`` on ``TEST_DATASET_URL``. What differs is only
transport: no sockets, the pool's frames instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedmist.simulate.client import RunnerSpec, client_params, load_sized
from fedmist.simulate.partition import JOB_SCHEME, Partition, by_dataset, partition
from fedmist.simulate.pool import LocalPool
from fedmist.simulate.status import SimulationStatus
from fedmist.spec.job import ResolvedJob
from fedmist.spec.params import JobParams, parse_params, with_defaults


@dataclass(frozen=True)
class SimulationOptions:
    """How to simulate a job: the population, its partition and the pool (``fedmist simulate``'s flags)."""

    clients: int  # with scheme "job": the job's number of trainers
    workdir: Path
    scheme: str = "iid"  # a partition.SCHEMES name, or JOB_SCHEME
    alpha: float = 0.5
    shards_per_client: int = 2
    workers: int | None = None  # None: one per core (local) or per CPU of the Ray cluster
    ray_address: str | None = None
    data: tuple[tuple[str, str], ...] = ()  # (url, format); empty: the job's trainers' datasets, concatenated
    overrides: Mapping[str, str] = field(default_factory=dict)  # job parameters over the manifest's


@dataclass
class Plan:
    """Everything resolved before a process starts: a bad parameter fails here, in one line."""

    params: JobParams
    spec: RunnerSpec
    names: list[str]  # the clients: client0..clientN-1, or (--partition job) the job's trainers' worker names
    eval_threads: int | None = None  # --partition job: the torch threads `fedmist run` gives the aggregator


def make_plan(job: ResolvedJob, options: SimulationOptions) -> Plan:
    """The aggregator's parameters (with ``overrides``), the clients' envs and the runner spec.

    A virtual client is a trainer made from the first trainer's template; with ``--partition job`` each client
    is one of the job's trainers, with its own env and its own dataset, named as its worker is. ``overrides``
    apply to every env, as if the manifest said them.
    """
    agg_env = {**job.aggregator.env, **options.overrides}
    params = with_defaults(parse_params(agg_env, where=str(job.job_file), role="aggregator"))
    client_env = {**(job.trainers[0].env if job.trainers else {}), **options.overrides}
    client_params(client_env, where=str(job.job_file))
    named_env: dict[str, dict[str, str]] = {}
    threads, eval_threads = 1, None
    if options.scheme == JOB_SCHEME:
        # float32 results depend on torch's thread count (~1e-8 per step): train and test with `fedmist run`'s
        from fedmist.launch.local import thread_budget

        eval_threads, threads = thread_budget(len(job.trainers))  # (aggregator, each trainer)
        if options.data:
            raise ValueError("--partition job trains each trainer on its own dataset; --data repartitions, "
                             "drop one of them")
        named_env = {w.name: {**w.env, **options.overrides} for w in job.trainers}
        for name, env in named_env.items():
            client_params(env, where=f"{job.job_file} ({name})")
        names = list(named_env)
    else:
        names = client_names(options.clients)
    datasets = list(options.data) or [(w.dataset_url or "", w.dataset_format or "idx") for w in job.trainers]
    if not datasets or not all(url for url, _ in datasets):
        raise ValueError("no data to partition: the job's trainers name no dataset url; give --data DIR")
    spec = RunnerSpec(model=params.model or "lenet5", num_classes=params.num_classes or 10, datasets=datasets,
                      trainer=params.trainer, client_env=client_env, named_env=named_env, threads=threads)
    return Plan(params, spec, names, eval_threads)


def open_pool(plan: Plan, options: SimulationOptions, data: tuple[Any, np.ndarray]) -> Any:
    """The local process pool, or Ray actors when ``ray_address`` is given (Ray imported only then)."""
    if options.ray_address:
        from fedmist.simulate.ray_pool import RayPool

        return RayPool(plan.spec, options.workers, options.ray_address)
    cores = os.cpu_count() or 1
    default = min(len(plan.names), max(1, cores // plan.spec.threads)) if plan.spec.threads > 1 else cores
    return LocalPool(plan.spec, options.workers or default, data)


def client_names(count: int) -> list[str]:
    width = len(str(count - 1)) if count > 1 else 1
    return [f"client{i:0{width}d}" for i in range(count)]


def load_test_set(url: str | None) -> tuple[Any, np.ndarray] | None:
    """The raw ``TEST_DATASET_URL`` data (None when unset), read before the pool forks, so a bad url fails in
    one line naming the setting, as the real aggregator's does, before any worker starts."""
    if not url:
        return None
    from fedmist.data.loaders import load_test_dataset, test_dataset_error

    try:
        return load_test_dataset(url)
    except (OSError, ValueError) as exc:
        raise ValueError(test_dataset_error(url, exc)) from None


def run_simulation(job: ResolvedJob, options: SimulationOptions,
                   say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> dict[str, Any]:
    """Run the job's rounds over ``options.clients`` virtual clients; return the final status document."""
    plan = make_plan(job, options)
    data, sizes = load_sized(plan.spec.datasets)
    if options.scheme == JOB_SCHEME:
        parts = by_dataset(sizes)
    else:
        parts = partition(data[1], options.clients, options.scheme, alpha=options.alpha,
                          shards_per_client=options.shards_per_client, seed=plan.params.seed or 0)
    say(f"{parts.clients} clients, partition {options.scheme}, {len(data[1])} samples "
        f"({int(parts.sizes().min())}..{int(parts.sizes().max())} per client)")
    test = load_test_set(plan.params.test_dataset_url)
    status = SimulationStatus(job, options, plan.params)
    pool = open_pool(plan, options, data)  # forked before this process runs any torch operation
    say(f"pool: {len(pool.workers)} {pool.engine} workers")
    try:
        from fedmist.simulate.rounds import SimulatedRounds

        rounds = SimulatedRounds(job, plan, parts, pool, status, say, test)
        rounds.run()
        status.finish(pool, "Succeeded", "SimulationSucceeded", f"{len(rounds.history)} rounds")
    except BaseException as exc:
        status.finish(pool, "Failed", "SimulationFailed", str(exc).splitlines()[0] if str(exc) else repr(exc))
        raise
    finally:
        pool.close()
        status.write(pool)
    return status.document

__all__ = ["Partition", "Plan", "SimulationOptions", "make_plan", "run_simulation"]
