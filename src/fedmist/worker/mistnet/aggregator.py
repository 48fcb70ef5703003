"""MistNet on the cloud (DESIGN sections 5.1 and 5.5-5.9): hand out the edge part, collect every edge's
bits into the disk store, train the cloud layers, evaluate through the same bit channel, save the full model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedmist.atomic import write_json_atomic
from fedmist.data.loaders import load_test_dataset, test_dataset_error
from fedmist.models.cloud_train import CloudTrainState, evaluate_cloud, train_cloud
from fedmist.models.extract import channel_features
from fedmist.models.parts import build_job_model, split_parts
from fedmist.models.weights import load_weights, save_weights
from fedmist.privacy.accounting import job_privacy_report
from fedmist.spec.params import MISTNET_NEEDS_EPSILON
from fedmist.wire import messages as msg
from fedmist.wire.arrays import encode_arrays
from fedmist.worker.checkpoint import CheckpointStore, job_spec_fields, spec_hash
from fedmist.worker.context import WorkerContext
from fedmist.worker.errors import ConfigurationError, JobFailure
from fedmist.worker.mistnet.feature_store import StoreSource, open_complete_stores, read_manifest
from fedmist.worker.mistnet.upload_server import UploadPlan, UploadServer, task_fingerprint
from fedmist.worker.report import Reporter

log = logging.getLogger("fedmist.aggregator")


def run_mistnet_aggregator(ctx: WorkerContext) -> dict[str, Any]:
    """Run the whole cloud side; return the final metrics (raises JobFailure with a reason otherwise)."""
    torch.set_num_threads(max(1, ctx.threads))
    params = ctx.params
    reporter = Reporter(ctx.status_file, ctx.worker, "aggregator")
    reporter.update(force=True, phase="Running", stage="preparing", algorithm="mistnet")

    try:
        model = build_job_model(params.model, num_classes=params.num_classes)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if not ctx.pretrained_model_url:
        raise ConfigurationError("MistNet needs pretrained weights: add spec.pretrainedModel (PRETRAINED_MODEL_URL is empty)")
    try:
        model.load_state_dict(load_weights(ctx.pretrained_model_url))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise ConfigurationError(f"pretrained model {ctx.pretrained_model_url}: {str(exc).splitlines()[0]}") from None
    try:
        parts = split_parts(model, params.cut_layer, f"model {params.model}")
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    edge, cloud, cut = parts.edge, parts.cloud, parts.cut
    epsilon = job_floor(params.epsilon)
    test = _load_test_set(params.test_dataset_url)

    transmitter = _s3_ready(ctx)
    task = msg.TaskMeta(
        algorithm="mistnet", model=params.model, cut_layer=cut, epsilon=msg.format_epsilon(epsilon),
        label_epsilon=msg.format_epsilon(params.label_epsilon) if params.label_epsilon else "",
        batch_size=max(2, params.batch_size), num_classes=params.num_classes, chunk_records=1000,
    )
    edge_weights = encode_arrays({k: v.numpy() for k, v in edge.state_dict().items()})
    store_root = ctx.state_dir / "features" / task_fingerprint(task, edge_weights)[:16]
    server = UploadServer(
        UploadPlan(
            job=ctx.job,
            task=task,
            edge_weights=edge_weights,
            participants=ctx.participants,
            token=ctx.token,
            store_root=store_root,
            s3=transmitter,
            key_for=(lambda worker: ctx.payload_key(worker, "records.u8")) if transmitter else None,
            feature_shape=_expected_shape(edge, test),
        ),
    )
    server.on_change = lambda: reporter.update(stage="receiving", workers=_edges_status(server))
    server.adopt_stored()
    reporter.update(force=True, stage="receiving", cut_layer=cut, epsilon=epsilon)
    timeout = params.round_timeout
    min_complete = params.min_clients
    # The test set's clean channel bits are computed while the edges extract and upload (torch releases the
    # GIL), instead of after: a fraction of a second off every job's critical path. On one torch thread, so
    # that on a shared machine the edges keep the cores while they extract.
    torch.set_num_threads(1)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-features") as pool:
        test_features = pool.submit(channel_features, edge, test[0]) if test is not None else None
        complete = asyncio.run(_collect(server, ctx, timeout, min_complete))
        test_packed = test_features.result() if test_features is not None else None
    torch.set_num_threads(max(1, ctx.threads))
    reporter.update(force=True, workers=_edges_status(server), participants=complete)

    source = open_complete_stores(store_root, complete)
    r = int(np.prod(source.feature_shape))
    edge_eps = edge_epsilons(source, epsilon, params.label_epsilon)
    privacy = job_privacy_report(epsilon, params.label_epsilon, edge_eps, r, task.num_classes)
    train_eps = [edge_eps[name][0] for name in source.workers]
    log.info("epsilon per edge (job floor %s): %s", msg.format_epsilon(epsilon),
             ", ".join(f"{name} {msg.format_epsilon(eps)}" for name, (eps, _) in edge_eps.items()))
    reporter.update(force=True, stage="training", epoch=0, epochs=params.epochs, privacy=privacy,
                    samples=len(source))
    debias = params.debias
    stores = _stores_summary(store_root, complete)
    checkpoints = CheckpointStore(ctx.state_dir, spec_hash(job_spec_fields(ctx, task=server.plan.fingerprint)),
                                  "mistnet-cloud")
    resume = _resume_point(checkpoints, stores)
    history: list[dict[str, Any]] = list(resume.meta["report_history"]) if resume else []

    def on_epoch(epoch: int, stats: dict[str, Any]) -> None:
        entry = {"epoch": epoch, **stats}
        if test is not None:
            entry.update({f"test_{k}": v for k, v in evaluate_cloud(
                cloud, test_packed, test[1], source.feature_shape, train_eps, debias,
                weights=source.counts).items()})
        history.append(entry)
        log.info("epoch %d: %s", epoch, entry)

    def on_epoch_end(epoch: int, state: CloudTrainState) -> None:
        """Checkpoint first, then report: whoever sees epoch k in the status can count on its checkpoint."""
        checkpoints.try_save(epoch, state.arrays, {**state.meta, "report_history": history, "stores": stores})
        reporter.update(force=True, stage="training", epoch=epoch, history=history)

    if resume is not None:
        reporter.update(force=True, stage="training", epoch=resume.epoch, history=history,
                        resumed_from_epoch=resume.epoch)
    started = time.monotonic()
    try:
        train_cloud(cloud, source, epochs=params.epochs, batch_size=params.batch_size,
                    max_lr=params.learning_rate, epsilon=train_eps, debias=debias,
                    seed=params.seed, on_epoch=on_epoch, resume=resume, on_epoch_end=on_epoch_end)
    except ValueError as exc:
        if resume is None:
            raise
        raise JobFailure(f"cannot resume from checkpoint {checkpoints.path}: {exc}") from None
    train_s = time.monotonic() - started

    reporter.update(force=True, stage="evaluating")
    metrics: dict[str, Any] = {"train_s": round(train_s, 3), "samples": len(source)}
    if server.refused:  # edges refused for their records (worker/record_check): the job trained without them
        metrics["refused"] = server.refused
    if resume is not None:
        metrics["resumed_from_epoch"] = resume.epoch
    if test is not None:  # the last epoch's evaluation is the final model's
        metrics.update(accuracy=history[-1]["test_accuracy"], loss=history[-1]["test_loss"])
    else:
        metrics["accuracy"] = None
        log.warning("TEST_DATASET_URL not set: the model is saved without a test accuracy")
    full = parts.full_state()
    metrics["model_bytes"] = int(sum(v.numel() * 4 for v in full.values() if v.is_floating_point()))

    reporter.update(force=True, stage="saving")
    model_path = _save_model(ctx, full, cut, epsilon, debias, metrics, privacy, history, edge_eps)
    if transmitter is not None and not ctx.params.keep_payloads:
        removed = transmitter.delete_prefix(transmitter.location.key(ctx.job) + "/")
        log.info("removed %d payload objects of job %s from S3 (keep_payloads=false)", removed, ctx.job)
    reporter.update(force=True, phase="Succeeded", stage="done", metrics=metrics, history=history,
                    model_path=str(model_path))
    return metrics


async def _collect(server: UploadServer, ctx: WorkerContext, timeout: float, min_complete: int) -> list[str]:
    security = ctx.security()
    ws_server = await server.listen(ctx.bind_host, ctx.agg_bind_port, security)
    log.info("aggregator listening on %s://%s:%d for %d edges", security.scheme, ctx.bind_host, ctx.agg_bind_port,
             ctx.participants)
    try:
        return await server.wait(timeout, min_complete)
    except TimeoutError as exc:
        raise JobFailure(str(exc)) from None
    finally:
        ws_server.close()
        await ws_server.wait_closed()


def job_floor(epsilon: float | None) -> float:
    """The aggregator's epsilon, the job's floor. Unset is a configuration error, never silently "no noise":
    the same rule (and words) as ``fedmist validate`` (spec/params.py), for a worker started by other means."""
    if epsilon is None:
        raise ConfigurationError(f"epsilon: {MISTNET_NEEDS_EPSILON}")
    return epsilon


def edge_epsilons(source: StoreSource, floor: float,
                  label_floor: float | None) -> dict[str, tuple[float, float | None]]:
    """Each edge's applied ``(epsilon, label_epsilon)`` from its store, in the source's order. A store made
    before edges declared their budgets held records made at the job's (then the only) values."""
    found: dict[str, tuple[float, float | None]] = {}
    for name, eps, label in zip(source.workers, source.epsilons, source.label_epsilons):
        if eps:
            found[name] = (msg.epsilon_field(eps), msg.epsilon_field(label, "label_epsilon") if label else None)
        else:
            found[name] = (floor, label_floor)
    return found


def _expected_shape(edge: torch.nn.Module, test: tuple[Any, np.ndarray] | None) -> tuple[int, ...] | None:
    """The feature shape every edge's records must have: the edge part's output on inputs shaped like the test
    set's (the cloud is evaluated on those, so training features of another shape could not be used anyway).
    Without a test set the input shape is unknown here and the first completed upload fixes it."""
    if test is None:
        return None
    from fedmist.data.tensors import probe_batch
    from fedmist.models.extract import feature_shape_of

    return feature_shape_of(edge, probe=probe_batch(test[0]))


def _s3_ready(ctx: WorkerContext):
    """The S3 transmitter with its bucket in place, or None for ws; failures become one-line job failures."""
    transmitter = ctx.s3()
    if transmitter is None:
        return None
    from fedmist.transport.s3 import S3Error

    try:
        transmitter.ensure_bucket()
    except S3Error as exc:
        raise JobFailure(str(exc)) from None
    return transmitter


def _stores_summary(store_root: Path, workers: list[str]) -> dict[str, dict[str, Any]]:
    """Which worker's records the training set holds, up to which record, with which hash: a checkpoint
    made over other features must not be resumed."""
    summary = {}
    for name in workers:
        manifest = read_manifest(store_root / name)
        if manifest is not None:
            summary[name] = {"received": manifest.received, "num_samples": manifest.num_samples,
                             "record_bytes": manifest.record_bytes, "sha256": manifest.sha256,
                             "epsilon": manifest.epsilon, "label_epsilon": manifest.label_epsilon}
    return summary


def _resume_point(checkpoints: CheckpointStore, stores: dict[str, dict[str, Any]]) -> CloudTrainState | None:
    checkpoint = checkpoints.load()
    if checkpoint is None:
        return None
    if checkpoint.meta.get("stores") != stores:
        log.warning("ignoring checkpoint %s: it was trained on other feature uploads (%s), this run has %s",
                    checkpoints.path, sorted(checkpoint.meta.get("stores", {})), sorted(stores))
        return None
    log.info("resuming cloud training after epoch %d", checkpoint.step)
    return CloudTrainState(checkpoint.step, checkpoint.arrays, checkpoint.meta)


def _edges_status(server: UploadServer) -> dict[str, dict[str, Any]]:
    return {name: vars(edge).copy() for name, edge in server.edges.items()}


def _load_test_set(url: str | None) -> tuple[Any, np.ndarray] | None:
    if not url:
        return None
    try:
        return load_test_dataset(url)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(test_dataset_error(url, exc)) from None


def _save_model(ctx: WorkerContext, state: dict[str, torch.Tensor], cut: int, epsilon: float, debias: bool,
                metrics: dict[str, Any], privacy: dict[str, Any], history: list[dict[str, Any]],
                edge_eps: dict[str, tuple[float, float | None]]) -> Path:
    if not ctx.model_url:
        raise ConfigurationError("MODEL_URL is empty: the aggregationWorker's Model needs a url")
    path = save_weights(state, ctx.model_url)
    write_json_atomic(Path(f"{path}.json"), {
        "job": ctx.job,
        "architecture": ctx.params.model,
        "algorithm": "mistnet",
        "cut_layer": cut,
        "epsilon": epsilon,  # the job's floor; each edge's own is in edge_epsilons and privacy.edges
        "edge_epsilons": edge_epsilon_texts(edge_eps),
        "debias": debias,
        "metrics": metrics,
        "privacy": privacy,
        "history": history,
        "saved": time.time(),
    })
    return path


def edge_epsilon_texts(edge_eps: dict[str, tuple[float, float | None]]) -> dict[str, dict[str, str]]:
    """``{edge: {"epsilon", "label_epsilon"}}`` as JSON-safe text ("inf"; "" = labels in clear)."""
    return {name: {"epsilon": msg.format_epsilon(eps),
                   "label_epsilon": "" if label is None else msg.format_epsilon(label)}
            for name, (eps, label) in edge_eps.items()}
