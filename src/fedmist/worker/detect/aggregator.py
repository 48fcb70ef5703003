"""MistNet on the cloud for YOLO detection (DESIGN 5.1, 5.5-5.9): hand out the edge part of the pretrained
detector, collect every edge's bits + boxes into the disk store, train the post-cut layers with ultralytics'
detection loss, evaluate mAP through the clean channel, save the model (fedmist state dict + metadata JSON at
MODEL_URL, and an ultralytics checkpoint beside it for ``YOLO(...).predict``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedmist.atomic import write_json_atomic
from fedmist.models.weights import save_weights
from fedmist.privacy.accounting import job_privacy_report
from fedmist.wire import messages as msg
from fedmist.wire.arrays import encode_arrays
from fedmist.worker.context import WorkerContext
from fedmist.worker.errors import ConfigurationError
from fedmist.worker.mistnet.aggregator import (
    _collect,
    _edges_status,
    _s3_ready,
    edge_epsilon_texts,
    edge_epsilons,
    job_floor,
)
from fedmist.worker.mistnet.feature_store import open_complete_stores
from fedmist.worker.mistnet.upload_server import UploadPlan, UploadServer, task_fingerprint
from fedmist.worker.report import Reporter

log = logging.getLogger("fedmist.aggregator")


def run_detect_aggregator(ctx: WorkerContext) -> dict[str, Any]:
    """Run the whole cloud side of a detection job; return the final metrics."""
    from fedmist.models.yolo_env import prepare_ultralytics

    torch.set_num_threads(max(1, ctx.threads))
    params = ctx.params
    reporter = Reporter(ctx.status_file, ctx.worker, "aggregator")
    reporter.update(force=True, phase="Running", stage="preparing", algorithm="mistnet", task="detect")
    prepare_ultralytics()
    from fedmist.models.detect_cloud_train import DetectionFeatures, evaluate_detection, train_detection_cloud
    from fedmist.models.detect_extract import detection_feature_shape
    from fedmist.models.device import describe, resolve_device
    from fedmist.models.yolo import load_yolo, yaml_name
    from fedmist.models.yolo_split import split_detection_model

    try:
        device = resolve_device(params.device)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if params.label_epsilon:
        raise ConfigurationError("label_epsilon is not supported for detection jobs (box classes travel as given)")
    if not ctx.pretrained_model_url:
        raise ConfigurationError("MistNet needs pretrained weights: add spec.pretrainedModel (PRETRAINED_MODEL_URL is empty)")
    try:
        weights = load_yolo(ctx.pretrained_model_url, yaml_name(params.model) if params.model else None)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"pretrained model {ctx.pretrained_model_url}: {str(exc).splitlines()[0]}") from None
    model = weights.model
    cut = _cut(params.cut_layer, len(model.model))
    imgsz = params.imgsz
    try:
        edge, cloud = split_detection_model(model, cut)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    edge.eval()
    shape = detection_feature_shape(edge, imgsz)
    epsilon = job_floor(params.epsilon)
    val_url = params.test_dataset_url or _public_val_beside_pretraining(ctx.pretrained_model_url)
    val = _validation_set(val_url, imgsz, weights.nc)

    transmitter = _s3_ready(ctx)
    batch_size = max(2, params.batch_size)
    task = msg.TaskMeta(
        algorithm="mistnet", model=weights.cfg, cut_layer=cut, epsilon=msg.format_epsilon(epsilon),
        batch_size=batch_size, num_classes=weights.nc, chunk_records=_chunk(imgsz), imgsz=imgsz, task="detect")
    edge_weights = encode_arrays({k: v.numpy() for k, v in edge.state_dict().items()})
    store_root = ctx.state_dir / "features" / task_fingerprint(task, edge_weights)[:16]
    server = UploadServer(UploadPlan(
        job=ctx.job, task=task, edge_weights=edge_weights, participants=ctx.participants, token=ctx.token,
        store_root=store_root, s3=transmitter,
        key_for=(lambda worker: ctx.payload_key(worker, "records.u8")) if transmitter else None,
        feature_shape=tuple(shape)))
    server.on_change = lambda: reporter.update(stage="receiving", workers=_edges_status(server))
    server.adopt_stored()
    reporter.update(force=True, stage="receiving", cut_layer=cut, epsilon=epsilon, imgsz=imgsz, model=weights.cfg)
    complete = asyncio.run(_collect(server, ctx, params.round_timeout, params.min_clients))
    reporter.update(force=True, workers=_edges_status(server), participants=complete)

    source = open_complete_stores(store_root, complete)
    if tuple(source.feature_shape) != tuple(shape):
        raise ConfigurationError(f"edges uploaded features of shape {list(source.feature_shape)}, the cloud expects "
                                 f"{list(shape)} at imgsz {imgsz}: set the same imgsz on every worker")
    features = DetectionFeatures(source)
    edge_eps = edge_epsilons(source, epsilon, None)
    train_eps = [edge_eps[name][0] for name in source.workers]
    # the box classes travel as given: the label figures are those of clear labels over the model's nc classes
    privacy = job_privacy_report(epsilon, None, edge_eps, int(np.prod(shape)), weights.nc)
    epochs = params.epochs
    reporter.update(force=True, stage="training", epoch=0, epochs=epochs, privacy=privacy, samples=len(features))
    debias = params.debias
    val_bits = _val_bits(edge, val) if val is not None else None
    history: list[dict[str, Any]] = []

    def on_epoch(epoch: int, stats: dict[str, Any]) -> None:
        entry = {"epoch": epoch, **{k: round(v, 5) for k, v in stats.items()}}
        if val_bits is not None:
            entry.update({f"test_{k}": round(v, 5) for k, v in evaluate_detection(
                cloud, val_bits, val[1], shape, imgsz, weights.nc, train_eps, debias, weights=source.counts).items()})
        history.append(entry)
        reporter.update(force=True, stage="training", epoch=epoch, history=history)
        log.info("epoch %d/%d: %s", epoch, epochs, ", ".join(f"{k} {v}" for k, v in entry.items() if k != "epoch"))

    started = time.monotonic()
    model.to(device)  # edge and cloud share the model's modules; the loop moves each batch to the device
    reporter.update(force=True, device=describe(device))
    train_detection_cloud(cloud, model, features, epochs=epochs, batch_size=batch_size,
                          lr=params.learning_rate, epsilon=train_eps, debias=debias, seed=params.seed,
                          on_epoch=on_epoch)
    model.cpu()
    metrics: dict[str, Any] = {"train_s": round(time.monotonic() - started, 3), "samples": len(features),
                               "loss": history[-1]["loss"], "device": describe(device)}
    if server.refused:  # edges refused for their records (worker/record_check): the job trained without them
        metrics["refused"] = server.refused
    if val_bits is not None:
        metrics.update({"mAP50": history[-1]["test_mAP50"], "mAP50-95": history[-1]["test_mAP50-95"]})
    else:
        metrics.update({"mAP50": None, "mAP50-95": None})
        log.warning("TEST_DATASET_URL not set and the pretraining set has no val split: the model is saved "
                    "without mAP")
    metrics["model_bytes"] = int(sum(v.numel() * 4 for v in model.state_dict().values() if v.is_floating_point()))
    reporter.update(force=True, stage="saving")
    model_path = _save(ctx, model, weights, cut, imgsz, epsilon, debias, metrics, privacy, history,
                       edge_epsilon_texts(edge_eps))
    if transmitter is not None and not params.keep_payloads:
        removed = transmitter.delete_prefix(transmitter.location.key(ctx.job) + "/")
        log.info("removed %d payload objects of job %s from S3 (keep_payloads=false)", removed, ctx.job)
    reporter.update(force=True, phase="Succeeded", stage="done", metrics=metrics, history=history,
                    model_path=str(model_path))
    return metrics


def _cut(cut: int | str, n: int) -> int:
    """``cut_layer`` for detection: an index (DESIGN 5.1); layer names of ultralytics models are indices too."""
    if isinstance(cut, str):
        if not cut.isdigit():
            raise ConfigurationError(f"cut_layer {cut!r}: YOLO modules are named by index; use 1..{n - 1}")
        cut = int(cut)
    return int(cut)


def _chunk(imgsz: int) -> int:
    from fedmist.models.detect_extract import extract_batch_size

    return extract_batch_size(imgsz)


def _public_val_beside_pretraining(pretrained: str) -> str | None:
    """Without TEST_DATASET_URL: the val split beside the cloud's own public training images, i.e. the set
    ``fedmist pretrain-yolo`` recorded in the pretrained file's metadata, when it has one. Edge data is never
    used: it stays on the edges."""
    import json

    from fedmist.data.coco import VAL_SPLITS, find_split

    try:
        source = json.loads(Path(f"{pretrained}.json").read_text()).get("source")
        if not source:
            return None
        find_split(source, VAL_SPLITS, fallback=False)
    except (OSError, ValueError, AttributeError):
        return None
    log.info("TEST_DATASET_URL not set: evaluating on the val split of the pretraining set %s", source)
    return str(source)


def _validation_set(url: str | None, imgsz: int, nc: int):
    """Letterboxed validation images + labels from TEST_DATASET_URL (its val split, else its only split)."""
    if not url:
        return None
    from fedmist.data.coco import VAL_SPLITS, DetectionDataset
    from fedmist.data.loaders import test_dataset_error

    try:
        data = DetectionDataset.open(url, imgsz, prefer=VAL_SPLITS, nc=nc)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(test_dataset_error(url, exc)) from None
    return data, [data.load(i)[1] for i in range(len(data))]


def _val_bits(edge: torch.nn.Module, val) -> np.ndarray:
    """Clean channel bits of the validation images (edge part -> binarize, no flipping), packed."""
    from fedmist.models.detect_extract import edge_bits, extract_batch_size
    from fedmist.privacy.channel import pack_bits

    data = val[0]
    step = extract_batch_size(data.imgsz)
    chunks = [pack_bits(edge_bits(edge, data.batch(s, s + step)[0]).numpy()) for s in range(0, len(data), step)]
    return np.concatenate(chunks)


def _save(ctx: WorkerContext, model: torch.nn.Module, weights, cut: int, imgsz: int, epsilon: float, debias: bool,
          metrics: dict[str, Any], privacy: dict[str, Any], history: list[dict[str, Any]],
          edge_eps: dict[str, dict[str, str]]) -> Path:
    from fedmist.models.yolo import save_ultralytics_checkpoint

    if not ctx.model_url:
        raise ConfigurationError("MODEL_URL is empty: the aggregationWorker's Model needs a url")
    model.eval()
    path = save_weights(model.state_dict(), ctx.model_url)
    ultra = save_ultralytics_checkpoint(model, path.with_name(f"{path.stem}-ultralytics.pt"), weights.names,
                                        {"imgsz": imgsz})
    write_json_atomic(Path(f"{path}.json"), {
        "job": ctx.job, "architecture": weights.cfg, "task": "detect", "algorithm": "mistnet", "nc": weights.nc,
        "names": weights.names, "imgsz": imgsz, "cut_layer": cut, "epsilon": epsilon, "edge_epsilons": edge_eps, "debias": debias,
        "metrics": metrics, "privacy": privacy, "history": history, "ultralytics_checkpoint": str(ultra),
        "saved": time.time()})
    return path
