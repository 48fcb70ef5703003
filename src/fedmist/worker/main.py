"""The worker entrypoints a container (or the local launcher) runs: ``fedmist worker aggregate|train``.

They read the env contract, pick the runtime for the job's algorithm from a registry, and turn every known
failure into one log line, a report entry and a non-zero exit code (2 for bad configuration, 1 otherwise).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

from fedmist.spec.errors import ManifestError
from fedmist.spec.params import runtime_family
from fedmist.worker.context import ContextError, WorkerContext
from fedmist.worker.errors import ConfigurationError, JobFailure
from fedmist.worker.report import record_failure

log = logging.getLogger("fedmist.worker")

Runner = Callable[[WorkerContext], dict[str, Any]]


def _runners() -> dict[tuple[str, str], Callable[[], Runner]]:
    """(role, family) -> a loader of the runtime, imported lazily so a bad env fails before torch loads."""

    def mistnet_aggregator() -> Runner:
        from fedmist.worker.mistnet.aggregator import run_mistnet_aggregator

        return run_mistnet_aggregator

    def mistnet_trainer() -> Runner:
        from fedmist.worker.mistnet.trainer import run_mistnet_trainer

        return run_mistnet_trainer

    def rounds_aggregator() -> Runner:
        from fedmist.worker.rounds.aggregator import run_rounds_aggregator

        return run_rounds_aggregator

    def rounds_trainer() -> Runner:
        from fedmist.worker.rounds.trainer import run_rounds_trainer

        return run_rounds_trainer

    def detect_aggregator() -> Runner:
        from fedmist.worker.detect.aggregator import run_detect_aggregator

        return run_detect_aggregator

    def detect_trainer() -> Runner:
        from fedmist.worker.detect.trainer import run_detect_trainer

        return run_detect_trainer

    def rounds_detect_aggregator() -> Runner:
        from fedmist.worker.rounds.detect_aggregator import run_detect_rounds_aggregator

        return run_detect_rounds_aggregator

    def rounds_detect_trainer() -> Runner:
        from fedmist.worker.rounds.detect_trainer import run_detect_rounds_trainer

        return run_detect_rounds_trainer

    return {("aggregator", "rounds-detect"): rounds_detect_aggregator, ("trainer", "rounds-detect"): rounds_detect_trainer,
            ("aggregator", "mistnet"): mistnet_aggregator, ("trainer", "mistnet"): mistnet_trainer,
            ("aggregator", "rounds"): rounds_aggregator, ("trainer", "rounds"): rounds_trainer,
            ("aggregator", "mistnet-detect"): detect_aggregator, ("trainer", "mistnet-detect"): detect_trainer}


def family_of(algorithm: str) -> str:
    """MistNet has its own runtime; every other algorithm is a strategy of the round engine (spec/params.py
    decides, as it picks the runtime's defaults)."""
    return runtime_family(algorithm)


def run_worker(role: str, args: list[str] | None = None) -> int:
    """Entry point for one worker process; returns its exit code."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ctx = WorkerContext.from_env(role)
    except (ContextError, ManifestError) as exc:
        log.error("bad worker configuration: %s", exc)
        return 2
    if args:
        log.info("container args %s recorded (fedmist workers take their settings from the env)", args)
    family = family_of(ctx.params.aggregation_algorithm or "")
    if family in ("mistnet", "rounds"):  # classification or detection: from the model / data the worker holds
        from fedmist.worker.detect.kind import task_family

        family = task_family(ctx, family)
    key = (role, family)
    loader = _runners().get(key)
    if loader is None:
        message = f"no {role} runtime for aggregation_algorithm={ctx.params.aggregation_algorithm!r} yet"
        log.error(message)
        record_failure(ctx.status_file, ctx.worker, role, message)
        return 2
    try:
        result = loader()(ctx)
    except (ConfigurationError, ContextError) as exc:
        log.error("bad job configuration: %s", exc)
        record_failure(ctx.status_file, ctx.worker, role, str(exc))
        return 2
    except JobFailure as exc:
        log.error("job failed: %s", exc)
        record_failure(ctx.status_file, ctx.worker, role, str(exc))
        return 1
    except Exception as exc:  # noqa: BLE001 - a worker must report any crash as a status reason, then exit
        log.error("internal error: %s\n%s", exc, traceback.format_exc())
        record_failure(ctx.status_file, ctx.worker, role, f"internal error: {type(exc).__name__}: {exc}")
        return 1
    log.info("%s %s finished: %s", role, ctx.worker, {k: v for k, v in result.items() if k != "history"})
    return 0
