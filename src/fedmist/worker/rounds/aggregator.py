"""The FedAvg family on the cloud (issue 3): rounds with sampling, quorum and deadlines over the trainers.

Each round: pick workers (``strategy.configure_fit``), send them the global weights, fold results in as they
arrive, close the round when every selected worker answered or is gone -- or at ``round_timeout`` with at
least ``min_clients`` results (then a bounded grace, then a clear failure) -- evaluate the new global model
on ``TEST_DATASET_URL``, and stop at ``exit_round`` or ``target_accuracy``. The final model goes to
``MODEL_URL`` with a metadata JSON, and every trainer gets STOP so it exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import torch

from fedmist.atomic import write_json_atomic
from fedmist.data.loaders import load_test_dataset, test_dataset_error
from fedmist.models.local_round import round_config
from fedmist.models.local_train import as_tensors, load_numpy_state, state_to_numpy
from fedmist.models.parts import build_job_model
from fedmist.models.weights import load_weights, save_weights, share_numpy_state
from fedmist.strategy import Strategy, build_strategy
from fedmist.strategy.sampling import ClientSampler
from fedmist.training import Trainer, build_trainer, check_metrics
from fedmist.transport import ws
from fedmist.wire import messages as msg
from fedmist.wire.arrays import decode_weights, encode_weights, raw_parameter_bytes
from fedmist.worker.checkpoint import CheckpointStore, job_spec_fields, spec_hash
from fedmist.worker.context import WorkerContext
from fedmist.worker.errors import ConfigurationError, JobFailure
from fedmist.worker.report import Reporter
from fedmist.worker.rounds.link_time import slowest_link
from fedmist.worker.rounds.server import OpenRound, RoundServer

log = logging.getLogger("fedmist.aggregator")

UPDATE_SLACK_BYTES = 64 * 1024  # an update is the global model re-encoded; only its header may differ a little


class RoundsJob:
    """State of one FedAvg-family job on the aggregator: model, strategy, test set, history."""

    def __init__(self, ctx: WorkerContext) -> None:
        params = ctx.params
        self.ctx = ctx
        self.rounds = params.exit_round
        self.round_timeout = params.round_timeout
        self.min_clients = params.min_clients
        self.model_name = params.model
        self.reporter = Reporter(ctx.status_file, ctx.worker, "aggregator")
        self.history: list[dict[str, Any]] = []
        self.model = self._build_model()
        try:
            self.trainer: Trainer = build_trainer(params.trainer, params.extra)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._init_weights()
        try:
            self.strategy: Strategy = build_strategy(
                params.aggregation_algorithm, {**params.extra, **params.model_dump(exclude={"extra"})})
        except ValueError as exc:
            raise ConfigurationError(f"aggregation_algorithm={params.aggregation_algorithm}: {exc}") from None
        self.test = self._load_test_set(params.test_dataset_url)
        # the global model is held once: as the payload buffer, which the torch model's tensors then point into
        self.global_bytes = encode_weights({k: v.detach().numpy() for k, v in self.model.state_dict().items()})
        self.load_global()
        self.model_bytes = raw_parameter_bytes(decode_weights(self.global_bytes))
        # every trainer runs this model, so an update is exactly this many bytes (``update_bounds``)
        self.update_bytes = len(self.global_bytes)

    def _init_weights(self) -> None:
        url = self.ctx.pretrained_model_url
        if not url:
            torch.manual_seed(self.ctx.params.seed)
            del self.model  # not two models at once: the seeded one replaces it
            self.model = self._build_model()
            return
        try:
            self.model.load_state_dict(load_weights(url))
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise ConfigurationError(f"pretrained model {url}: {str(exc).splitlines()[0]}") from None

    def _build_model(self) -> torch.nn.Module:
        try:
            return build_job_model(self.model_name, num_classes=self.ctx.params.num_classes)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    @staticmethod
    def _load_test_set(url: str | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not url:
            log.warning("TEST_DATASET_URL not set: rounds run without a test accuracy")
            return None
        try:
            return as_tensors(*load_test_dataset(url))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(test_dataset_error(url, exc)) from None

    def fit_meta(self, config: dict[str, Any]) -> msg.FitMeta:
        params = self.ctx.params  # the round config's rule is models.local_round's, shared with fedmist simulate
        return msg.FitMeta(config=round_config(params, config), model=self.model_name,
                           num_classes=params.num_classes,
                           rounds=self.rounds, trainer=params.trainer or "")

    def load_global(self) -> None:
        """Point the torch model (for the test and for saving) at the current global weights; no copy."""
        share_numpy_state(self.model, decode_weights(self.global_bytes, check_finite=False, writable=True))

    def evaluate_global(self) -> dict[str, float]:
        """Test the weights last loaded by :meth:`load_global` (runs in a worker thread)."""
        if self.test is None:
            return {}
        where = f"trainer {type(self.trainer).__qualname__}.evaluate_global"
        try:
            return check_metrics(self.trainer.evaluate_global(self.model, *self.test), where)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    def headline_metrics(self, result: dict[str, float]) -> dict[str, Any]:
        """Test figures that join accuracy/loss in the job's metrics (hook: mAP for YOLO, detect_aggregator.py)."""
        return {}

    def model_metadata(self, path: Path) -> dict[str, Any]:
        """Extra fields of the saved model's JSON; may write companion files (hook: detect_aggregator.py)."""
        return {}

    def status(self, server: RoundServer, force: bool = False, **fields: Any) -> None:
        """Mirror the engine's state into the report (throttled unless ``force``: round ends always land)."""
        self.reporter.update(force=force, workers={n: vars(w).copy() for n, w in server.workers.items()}, **fields)


def run_rounds_aggregator(ctx: WorkerContext, job_class: type[RoundsJob] = RoundsJob) -> dict[str, Any]:
    """Run every round; return the final metrics (raises JobFailure with a one-line reason otherwise)."""
    torch.set_num_threads(max(1, ctx.threads))
    job = job_class(ctx)
    job.reporter.update(force=True, phase="Running", stage="waiting", round=0, rounds=job.rounds,
                        algorithm=ctx.params.aggregation_algorithm, metrics={"model_bytes": job.model_bytes})
    log.info("%s over %d rounds, min_clients %d, round_timeout %g s, model %s (%d float32 bytes)",
             job.strategy, job.rounds, job.min_clients, job.round_timeout, job.model_name, job.model_bytes)
    metrics = asyncio.run(_serve(job))
    path = _save_model(job, metrics)
    job.reporter.update(force=True, phase="Succeeded", stage="done", metrics=metrics, history=job.history,
                        model_path=str(path))
    return metrics


async def _serve(job: RoundsJob) -> dict[str, Any]:
    ctx = job.ctx
    server = RoundServer(job=ctx.job, token=ctx.token, participants=ctx.participants, strategy=job.strategy,
                         idle_timeout=max(600.0, 4 * job.round_timeout) * job.rounds,
                         payload_timeout=job.round_timeout,
                         max_update_bytes=len(job.global_bytes) + UPDATE_SLACK_BYTES, carrier=_carrier(ctx),
                         update_bytes=job.update_bytes, max_samples=ctx.params.max_samples or 0,
                         spool_dir=_spool_dir(ctx))
    server.on_change = lambda: job.status(server)
    security = ctx.security()
    ws_server = await ws.serve(server.handle, ctx.bind_host, ctx.agg_bind_port, server.limits, security)
    log.info("aggregator listening on %s://%s:%d for %d trainers (weights via %s)", security.scheme, ctx.bind_host,
             ctx.agg_bind_port, ctx.participants, ctx.transmitter)
    try:
        metrics = await _run_rounds(job, server)
        await server.stop_all("job finished")
        return metrics
    except BaseException:
        await server.stop_all("job failed", timeout=2.0)
        raise
    finally:
        ws_server.close()
        await ws_server.wait_closed()
        await _cleanup(server, ctx)


def _spool_dir(ctx: WorkerContext) -> Path | None:
    """The state dir (on the aggregator's volume) holds a streamed update's undo journal; else $TMPDIR."""
    try:
        ctx.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return ctx.state_dir


def _carrier(ctx: WorkerContext):
    """The job's weights carrier; for S3 the bucket is created first (a failure is a one-line job failure)."""
    from fedmist.transport.base import TransportError

    carrier = ctx.carrier()
    try:
        if ctx.transmitter == "s3":
            carrier.transmitter.ensure_bucket()
    except TransportError as exc:
        raise JobFailure(str(exc)) from None
    return carrier


async def _cleanup(server: RoundServer, ctx: WorkerContext) -> None:
    """Remove the job's weight objects from S3 (unless ``keep_payloads``), succeeded or not."""
    if ctx.params.keep_payloads:
        return
    from fedmist.transport.base import TransportError

    try:
        removed = await server.carrier.cleanup()
    except TransportError as exc:
        log.warning("could not remove the job's payload objects: %s", exc)
        return
    if removed:
        log.info("removed %d payload objects of job %s from S3 (keep_payloads=false)", removed, ctx.job)


async def _run_rounds(job: RoundsJob, server: RoundServer) -> dict[str, Any]:
    """Train round after round; each new global model is tested *while the next round trains*.

    Why pipelined: testing the global model is the largest cost outside local training (about a second for
    10k images on one core), and the trainers would sit idle through it. The test of round r runs in a
    thread during round r+1 and its history entry is written when it ends, so results are the same as a
    sequential engine's. The price: when round r reaches ``target_accuracy`` the engine learns it during round
    r+1, so it finishes (and tests) that round too and saves the newer model.
    """
    sampler = ClientSampler(job.ctx.params.seed)
    book = RoundBook(job, server)
    checkpoints = CheckpointStore(job.ctx.state_dir, spec_hash(job_spec_fields(job.ctx)), "rounds")
    first, pending = resume_rounds(checkpoints, job, book, sampler)
    evaluation: asyncio.Task | None = None
    if pending is not None:  # the checkpointed round's test never finished: run it now
        job.load_global()
        evaluation = asyncio.ensure_future(book.evaluate(pending))
    for number in range(first, job.rounds + 1):
        need = max(job.min_clients, job.strategy.min_available_clients)
        wanted = job.ctx.participants if number == first else need
        available = await server.wait_for_workers(wanted, job.round_timeout)
        if len(available) < need:
            raise JobFailure(f"round {number}: {len(available)} of {job.ctx.participants} trainers connected "
                             f"within {job.round_timeout:g} s, min_clients is {job.min_clients}, "
                             f"min_available_clients is {job.strategy.min_available_clients}")
        entry = await _train_round(job, server, book, number, available, sampler)
        reached = await evaluation if evaluation is not None else False
        await asyncio.to_thread(save_round_checkpoint, checkpoints, job, book, sampler, entry)
        job.load_global()  # the torch model the test thread reads; the engine itself only uses the bytes
        evaluation = asyncio.ensure_future(book.evaluate(entry))
        if reached:
            break
    job.status(server, stage="evaluating")
    if evaluation is not None:
        await evaluation
    return book.metrics


async def _train_round(job: RoundsJob, server: RoundServer, book: "RoundBook", number: int, available: list[str],
                       sampler: ClientSampler) -> dict[str, Any]:
    """Dispatch one round, fold results in as they arrive, close it, aggregate; return its history entry."""
    started = time.monotonic()
    book.first_dispatch = book.first_dispatch or started
    global_weights = decode_weights(job.global_bytes, check_finite=False)
    instructions = sampler.configure(job.strategy, number, global_weights, available)
    job.strategy.begin_round(number, global_weights)
    rnd = server.open_round(number, instructions.workers)
    job.status(server, force=True, stage="training", round=number)
    await server.send_fit(rnd, job.fit_meta(dict(instructions.config)), job.global_bytes)
    late = await close_round(rnd, job.round_timeout, job.min_clients)
    new_weights = dict(job.strategy.finish_round())  # our own mapping: encoding empties it
    del global_weights  # the old global stays alive only as the model the previous round's test still reads
    job.global_bytes = encode_weights(new_weights, consume=True, lazy=True)  # frees the aggregate tensor by tensor
    del new_weights
    lost = sorted(set(server.take_departures()) | rnd.lost)
    return {"round": number, "participants": len(rnd.accepted), "selected": len(rnd.selected), "late": len(late),
            "lost": len(lost), "lost_workers": lost, "selected_workers": sorted(rnd.selected), "rejected": sorted(rnd.rejected),
            "bytes_up": rnd.bytes_up, "bytes_down": rnd.bytes_down,
            "duration_s": round(time.monotonic() - started, 3),
            "max_compute_s": round(max(rnd.compute_s.values(), default=0.0), 3),
            "dispatched_s": round(started - book.first_dispatch, 3),
            "slowest_link": slowest_link(rnd, started)}


def save_round_checkpoint(checkpoints: CheckpointStore, job: RoundsJob, book: "RoundBook",
                          sampler: ClientSampler, entry: dict[str, Any]) -> bool:
    """Round boundary: the new global model, strategy state, the sampler's record, history and the round's entry
    (its test still pending). Written before the next round is dispatched."""
    arrays = {f"global/{k}": v for k, v in decode_weights(job.global_bytes, check_finite=False).items()}
    arrays.update({f"strategy/{k}": v for k, v in job.strategy.state_dict().items()})
    meta = {"round": entry["round"], "sampler": sampler.state_dict(), "history": job.history,
            "pending": entry, "metrics": book.metrics}
    return checkpoints.try_save(entry["round"], arrays, meta)


def resume_rounds(checkpoints: CheckpointStore, job: RoundsJob, book: "RoundBook",
                  sampler: ClientSampler) -> tuple[int, dict[str, Any] | None]:
    """Restore the last round boundary if there is one; return (first round to run, entry still to test)."""
    checkpoint = checkpoints.load()
    if checkpoint is None:
        return 1, None
    global_weights = {k[len("global/"):]: v for k, v in checkpoint.arrays.items() if k.startswith("global/")}
    strategy_state = {k[len("strategy/"):]: v for k, v in checkpoint.arrays.items() if k.startswith("strategy/")}
    try:
        load_numpy_state(job.model, global_weights)
        job.strategy.load_state_dict(strategy_state)
        sampler.load_state_dict(checkpoint.meta.get("sampler", {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise JobFailure(f"cannot resume from checkpoint {checkpoints.path}: {exc}") from None
    job.global_bytes = encode_weights(state_to_numpy(job.model))  # the model's key order, not the file's
    job.history[:] = list(checkpoint.meta.get("history", []))
    book.metrics.update(checkpoint.meta.get("metrics", {}))
    book.metrics["resumed_from_round"] = checkpoint.step
    log.info("resuming after round %d of %d", checkpoint.step, job.rounds)
    job.reporter.update(force=True, round=checkpoint.step, history=job.history, resumed_from_round=checkpoint.step)
    return checkpoint.step + 1, checkpoint.meta.get("pending")


class RoundBook:
    """The job's running record: per-round history entries (completed by their test) and the headline metrics."""

    def __init__(self, job: RoundsJob, server: RoundServer) -> None:
        self.job, self.server = job, server
        self.metrics: dict[str, Any] = {"model_bytes": job.model_bytes, "lost_workers": [], "late_results": 0}
        self.first_dispatch: float | None = None

    async def evaluate(self, entry: dict[str, Any]) -> bool:
        """Test the model ``job.load_global`` just loaded, record the round; True once target_accuracy is met."""
        started = time.monotonic()
        result = await asyncio.to_thread(self.job.evaluate_global)
        entry.update({f"test_{k}": v for k, v in result.items() if k not in ("accuracy", "loss")})
        entry.update(accuracy=result.get("accuracy"), loss=result.get("loss"),
                     eval_s=round(time.monotonic() - started, 3),
                     elapsed_s=round(time.monotonic() - (self.first_dispatch or started), 3))
        self.job.history.append(entry)
        self.metrics.update(accuracy=entry["accuracy"], loss=entry["loss"], rounds=entry["round"],
                            lost_workers=sorted({*self.metrics["lost_workers"], *entry["lost_workers"]}),
                            late_results=self.metrics["late_results"] + entry["late"],
                            **self.job.headline_metrics(result))
        self.job.status(self.server, force=True, history=self.job.history, metrics=dict(self.metrics))
        log.info("round %d: %s", entry["round"], entry)
        target = self.job.ctx.params.target_accuracy
        if target is not None and entry["accuracy"] is not None and entry["accuracy"] >= target:
            log.info("target accuracy %.4f reached in round %d", target, entry["round"])
            return True
        return False


async def close_round(rnd: OpenRound, round_timeout: float, min_clients: int) -> list[str]:
    """Wait for the round's results under its deadline; return the workers that will be late.

    Closes as soon as every selected worker answered or is gone; at ``round_timeout`` closes with what it has
    if that meets ``min_clients``, else waits one more ``round_timeout`` for the pending ones and then fails.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + round_timeout
    grace_end = deadline + round_timeout
    while not rnd.settled():
        end = deadline if len(rnd.accepted) >= min_clients else grace_end
        if loop.time() >= end:
            break
        rnd.changed.clear()
        try:
            await asyncio.wait_for(rnd.changed.wait(), end - loop.time())
        except TimeoutError:
            continue
    rnd.closed = True
    late = rnd.pending()
    if len(rnd.accepted) < min_clients:
        raise JobFailure(
            f"round {rnd.number}: only {len(rnd.accepted)} result(s) from {len(rnd.selected)} selected trainers "
            f"within {2 * round_timeout:g} s (min_clients {min_clients}); lost {sorted(rnd.lost)}, "
            f"rejected {sorted(rnd.rejected)}, no answer from {late}")
    if late:
        log.warning("round %d closed at its deadline without %s", rnd.number, late)
    return late


def _save_model(job: RoundsJob, metrics: dict[str, Any]) -> Path:
    ctx = job.ctx
    if not ctx.model_url:
        raise ConfigurationError("MODEL_URL is empty: the aggregationWorker's Model needs a url")
    job.load_global()
    path = save_weights(job.model.state_dict(), ctx.model_url)
    write_json_atomic(Path(f"{path}.json"), {
        "job": ctx.job,
        "architecture": job.model_name,
        "algorithm": ctx.params.aggregation_algorithm,
        "strategy": repr(job.strategy),
        "rounds": len(job.history),
        "metrics": metrics,
        "history": job.history,
        "saved": time.time(),
        **job.model_metadata(path),
    })
    return path
