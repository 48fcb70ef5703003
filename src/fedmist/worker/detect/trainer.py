"""MistNet on the edge for YOLO detection (DESIGN 5.1-5.4): get the edge part of the detector from the
aggregator, run it once over the local COCO-layout images, binarize + randomized response, and stream packed
bits with each image's boxes (ws frames or one S3 object), exactly like the classification edge, with the same
edge-side privacy (``fedmist.privacy.edge``): the stricter epsilon, noise keyed on the seed and the image and
label files, the ledger, the budget. Boxes travel as given: a trainer's own label_epsilon is refused, as the
aggregator's is.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import torch

from fedmist.models.extract import load_edge_weights
from fedmist.privacy.edge import EdgePrivacy, features_fingerprint
from fedmist.transport.base import Channel, TransportError
from fedmist.transport.connect import connect_with_retry
from fedmist.wire import messages as msg
from fedmist.wire.envelope import ProtocolError
from fedmist.worker.context import WorkerContext
from fedmist.worker.errors import ConfigurationError, JobFailure
from fedmist.worker.mistnet.trainer import (
    REPLY_TIMEOUT_S,
    EdgeSecrets,
    _envelope,
    begin_release,
    edge_secrets,
    effective_epsilons,
    send_records,
)
from fedmist.worker.report import Reporter

log = logging.getLogger("fedmist.trainer")

EDGE_IGNORED = ("epochs", "learning_rate")


def run_detect_trainer(ctx: WorkerContext) -> dict[str, Any]:
    """Upload this edge's detection features; return its figures (samples, bytes, compute seconds)."""
    from fedmist.models.yolo_env import prepare_ultralytics

    torch.set_num_threads(max(1, ctx.threads))
    privacy = EdgePrivacy.from_context(ctx)  # a trainer without its own epsilon fails before it loads anything
    if ctx.params.label_epsilon is not None:
        raise ConfigurationError("label_epsilon is not supported for detection jobs (box classes travel as given)")
    reporter = Reporter(ctx.status_file, ctx.worker, "trainer")
    reporter.update(force=True, phase="Running", stage="loading", task="detect")
    ignored = {name: getattr(ctx.params, name) for name in EDGE_IGNORED if getattr(ctx.params, name) is not None}
    if ignored:
        note = (f"{', '.join(f'{k}={v}' for k, v in ignored.items())} set on this edge do not apply to MistNet: "
                f"the edge runs its layers once, the cloud trains (its own epochs/learning_rate)")
        log.info(note)
        reporter.update(force=True, note=note)
    prepare_ultralytics()
    from fedmist.data.coco import DetectionDataset

    imgsz = ctx.params.imgsz
    try:
        data = DetectionDataset.open(ctx.dataset_url, imgsz)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"dataset {ctx.dataset_name or ctx.dataset_url}: {str(exc).splitlines()[0]}") from None
    from fedmist.data.coco import label_path_of
    from fedmist.privacy.noise import files_fingerprint

    try:
        secrets = edge_secrets(privacy, files_fingerprint((image, label_path_of(image)) for image in data.images))
    except OSError as exc:
        raise ConfigurationError(f"dataset {ctx.dataset_name or ctx.dataset_url}: {exc}") from None
    reporter.update(force=True, stage="connecting", samples=len(data))
    return asyncio.run(_run(ctx, secrets, data, reporter))


async def _run(ctx: WorkerContext, secrets: EdgeSecrets, data, reporter: Reporter) -> dict[str, Any]:
    url = ctx.aggregator_url()
    try:
        channel = await connect_with_retry(url, deadline_s=ctx.params.round_timeout, security=ctx.security())
    except TransportError as exc:
        raise JobFailure(str(exc)) from None
    try:
        await channel.send(_envelope(ctx, msg.HELLO, {
            "role": "trainer", "num_samples": len(data), "dataset": ctx.dataset_name}))
        envelope, body = await channel.recv(REPLY_TIMEOUT_S)
        if envelope.type == msg.ACK:
            reporter.update(force=True, phase="Succeeded", stage="done", bytes_up=0, compute_s=0.0)
            return dict(reporter.data)
        task = msg.parse_meta(envelope, msg.TASK)
        if task.task != "detect":
            raise JobFailure(f"the aggregator runs a {task.task} job, but this edge holds a detection dataset")
        if task.imgsz and task.imgsz != data.imgsz:
            data.imgsz = task.imgsz
            log.info("using the aggregator's imgsz %d", task.imgsz)
        data.nc = task.num_classes
        if task.label_epsilon:
            raise JobFailure("the aggregator asks for label_epsilon, which detection jobs do not support")
        edge = _edge_model(task, body)
        features = features_fingerprint(task.model, task.cut_layer, task.num_classes, task.task, data.imgsz, body)
        figures = await _upload(ctx, secrets, features, channel, task, edge, data, reporter)
        reply, _ = await channel.recv(REPLY_TIMEOUT_S)
        if not msg.parse_meta(reply, msg.ACK).complete:
            raise JobFailure("the aggregator did not confirm the upload")
    except (ProtocolError, TransportError) as exc:
        raise JobFailure(f"aggregator {url}: {exc}") from None
    except ValueError as exc:  # a bad image or label file found while extracting
        raise ConfigurationError(f"dataset {ctx.dataset_name or ctx.dataset_url}: {str(exc).splitlines()[0]}") from None
    finally:
        await channel.close()
    figures.update(bytes_up=channel.bytes_sent + figures.pop("bytes_s3"), bytes_down=channel.bytes_received)
    reporter.update(force=True, phase="Succeeded", stage="done", **figures)
    return figures


def _edge_model(task: msg.TaskMeta, body: memoryview) -> torch.nn.Module:
    """The edge part, built locally from the model yaml and filled with the aggregator's weights."""
    from fedmist.models.yolo import build_yolo
    from fedmist.models.yolo_split import split_detection_model

    try:
        edge, _ = split_detection_model(build_yolo(task.model, task.num_classes), task.cut_layer)
    except ValueError as exc:
        raise ProtocolError(f"task names an unusable model: {exc}") from None
    return load_edge_weights(edge, body).eval()


async def _upload(ctx: WorkerContext, secrets: EdgeSecrets, features: str, channel: Channel, task: msg.TaskMeta,
                  edge: torch.nn.Module, data, reporter: Reporter) -> dict[str, Any]:
    from fedmist.models.detect_extract import DetectionRecordStream, detection_feature_shape
    from fedmist.privacy.noise import randomized_bits
    from fedmist.wire.detect_records import record_feature_bytes

    epsilon, _ = effective_epsilons(secrets, task)
    shape = detection_feature_shape(edge, data.imgsz)
    feature_bytes = record_feature_bytes(shape)
    record = feature_bytes + 1
    begin_release(ctx, secrets, features, task, math.prod(shape), epsilon, None)
    layout = {"num_samples": len(data), "feature_bytes": feature_bytes, "label_bytes": 1, "feature_shape": list(shape),
              "epsilon": msg.format_epsilon(epsilon)}
    noise = EdgePrivacy.noise(secrets.seed, secrets.data, features, "features")
    stream = DetectionRecordStream(edge, data, epsilon, None, task.chunk_records,
                                   noise=lambda bits, start: randomized_bits(noise, bits, epsilon, start))
    reporter.update(force=True, stage="extracting", received=task.resume_records, epsilon=epsilon)
    bytes_s3 = await send_records(ctx, channel, stream, record, layout, task.resume_records, reporter)
    log.info("uploaded %d detection records of %d bytes via %s; edge compute %.3f s (+%.3f s reading images)",
             len(data), record, ctx.transmitter, stream.compute_s, stream.load_s)
    return {"samples": len(data), "compute_s": round(stream.compute_s, 3), "load_s": round(stream.load_s, 3),
            "record_bytes": record, "feature_shape": list(shape), "epsilon": epsilon, "bytes_s3": bytes_s3,
            "dropped_boxes": stream.dropped_boxes}
