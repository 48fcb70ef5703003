"""MistNet on the edge (DESIGN sections 5.1-5.4): get the edge part from the aggregator, run it once over the
local data, binarize + randomized response, and stream the packed bits with labels as fixed-size records.

The edge decides its own privacy (``fedmist.privacy.edge``): it applies the stricter of its own epsilon and the
aggregator's, keys its noise on its secret seed (kept in its own state folder) and on the data, so a re-run after
a crash reproduces exactly the bits already uploaded (a resumed upload hashes the same) while other data gets
fresh noise, and it writes every release to its privacy ledger before the first record leaves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedmist.data.loaders import load_dataset
from fedmist.data.tensors import probe_batch
from fedmist.models.extract import feature_shape_of, iter_extract, load_edge_weights
from fedmist.models.parts import build_job_model, split_parts
from fedmist.privacy.edge import EdgePrivacy, features_fingerprint
from fedmist.privacy.ledger import Release
from fedmist.privacy.noise import CoupledNoise, data_fingerprint, randomized_bits, randomized_labels
from fedmist.transport.base import Channel, TransportError
from fedmist.transport.connect import connect_with_retry
from fedmist.wire import messages as msg
from fedmist.wire.envelope import Envelope, ProtocolError
from fedmist.worker.context import WorkerContext
from fedmist.worker.errors import ConfigurationError, JobFailure, check_labels
from fedmist.worker.report import Reporter

log = logging.getLogger("fedmist.trainer")

REPLY_TIMEOUT_S = 120.0
MAX_FRUITLESS_SESSIONS = 5  # reconnects in a row that did not move the resume offset before giving up
FRAME_BYTES = msg.RECORDS_FRAME_BYTES  # records per RECORDS frame are capped so a lost connection costs at most ~64 KiB


@dataclass(frozen=True)
class EdgeSecrets:
    """What this edge knows at start and the aggregator never learns: its privacy settings, its noise seed
    (and whether this process created it, which names why a resume fails) and its data's fingerprint."""

    privacy: EdgePrivacy
    seed: int
    seed_is_new: bool
    data: str


def edge_secrets(privacy: EdgePrivacy, data: str) -> EdgeSecrets:
    seed, is_new = privacy.seed()
    return EdgeSecrets(privacy, seed, is_new, data)


def run_mistnet_trainer(ctx: WorkerContext) -> dict[str, Any]:
    """Upload this edge's features; return the edge's figures (samples, bytes, compute seconds)."""
    torch.set_num_threads(max(1, ctx.threads))
    privacy = EdgePrivacy.from_context(ctx)  # a trainer without its own epsilon fails before it loads anything
    reporter = Reporter(ctx.status_file, ctx.worker, "trainer")
    reporter.update(force=True, phase="Running", stage="loading")
    try:
        images, labels = load_dataset(ctx.dataset_url, ctx.dataset_format)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"dataset {ctx.dataset_name or ctx.dataset_url}: {str(exc).splitlines()[0]}") from None
    edge = edge_secrets(privacy, data_fingerprint(images, labels))
    reporter.update(force=True, stage="connecting", samples=len(images))
    return asyncio.run(_run(ctx, edge, images, labels, reporter))


async def _run(ctx: WorkerContext, secrets: EdgeSecrets, images: np.ndarray | torch.Tensor, labels: np.ndarray,
               reporter: Reporter) -> dict[str, Any]:
    """Sessions until the aggregator confirms the upload. A dropped connection is not the end: reconnect
    (backoff with jitter, bounded by the connect deadline) and resume from the offset the aggregator reports
    in its task, until ``MAX_FRUITLESS_SESSIONS`` sessions in a row ended without moving that offset."""
    url = ctx.aggregator_url()
    totals = {"bytes_up": 0, "bytes_down": 0, "sessions": 0}
    fruitless, best = 0, -1
    while True:
        try:
            channel = await connect_with_retry(url, deadline_s=ctx.params.round_timeout,
                                               security=ctx.security())
        except TransportError as exc:
            raise JobFailure(str(exc)) from None
        totals["sessions"] += 1
        progress: dict[str, int] = {}
        try:
            figures = await _session(ctx, secrets, channel, images, labels, reporter, progress)
        except ProtocolError as exc:
            raise JobFailure(f"aggregator {url}: {exc}") from None
        except TransportError as exc:
            resumed_at = progress.get("resume", -1)
            fruitless = 0 if resumed_at > best else fruitless + 1
            best = max(best, resumed_at)
            if fruitless >= MAX_FRUITLESS_SESSIONS:
                raise JobFailure(f"aggregator {url}: {exc} ({fruitless} sessions in a row made no progress)") from None
            log.warning("connection to %s lost (%s); reconnecting to resume the upload", url, exc)
            reporter.update(force=True, stage="reconnecting")
            continue
        finally:
            totals["bytes_up"] += channel.bytes_sent
            totals["bytes_down"] += channel.bytes_received
            await channel.close()
        figures.update(bytes_up=totals["bytes_up"] + figures.pop("bytes_s3", 0), bytes_down=totals["bytes_down"],
                       sessions=totals["sessions"])
        reporter.update(force=True, phase="Succeeded", stage="done", **figures)
        return figures


async def _session(ctx: WorkerContext, secrets: EdgeSecrets, channel: Channel, images: np.ndarray | torch.Tensor,
                   labels: np.ndarray, reporter: Reporter, progress: dict[str, int]) -> dict[str, Any]:
    """One connection: HELLO, then either ACK (the aggregator holds everything already) or TASK + upload."""
    await channel.send(_envelope(ctx, msg.HELLO, {
        "role": "trainer", "num_samples": len(images), "dataset": ctx.dataset_name}))
    envelope, body = await channel.recv(REPLY_TIMEOUT_S)
    if envelope.type == msg.ACK:  # the aggregator already holds all of this edge's records: nothing to send
        msg.parse_meta(envelope, msg.ACK)
        return {"samples": len(images), "compute_s": 0.0, "resumed_from": len(images)}
    task = msg.parse_meta(envelope, msg.TASK)
    progress["resume"] = task.resume_records
    edge = _edge_model(task, body)
    features = features_fingerprint(task.model, task.cut_layer, task.num_classes, task.task, task.imgsz, body)
    figures = await _upload(ctx, secrets, features, channel, task, edge, images, labels, reporter)
    reply, _ = await channel.recv(REPLY_TIMEOUT_S)
    ack = msg.parse_meta(reply, msg.ACK)
    if not ack.complete:
        raise JobFailure("the aggregator did not confirm the upload")
    figures["resumed_from"] = task.resume_records
    return figures


def _edge_model(task: msg.TaskMeta, body: memoryview) -> torch.nn.Module:
    """The edge part, built locally and filled with the aggregator's weights (the cloud part is never sent)."""
    try:
        model = build_job_model(task.model, num_classes=task.num_classes)
        edge = split_parts(model, task.cut_layer, f"model {task.model}").edge
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return load_edge_weights(edge, body)


class _RecordStream:
    """Extraction as a stream of record chunks ``(first_index, bytes)``; counts edge compute and hashes all."""

    def __init__(self, edge: torch.nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray, epsilon: float,
                 chunk_records: int, label_bytes: int, noise: CoupledNoise) -> None:
        self._batches = iter_extract(edge, images, epsilon, batch_size=chunk_records,
                                     noise=lambda bits, start: randomized_bits(noise, bits, epsilon, start))
        self._labels = labels
        self._label_bytes = label_bytes
        self.digest = hashlib.sha256()
        self.compute_s = 0.0

    def __iter__(self):
        while True:
            started = time.perf_counter()
            item = next(self._batches, None)
            self.compute_s += time.perf_counter() - started
            if item is None:
                return
            start, packed = item
            labels = self._labels[start:start + len(packed)].astype(f"<u{self._label_bytes}")
            rows = np.concatenate([packed, labels.view(np.uint8).reshape(len(packed), self._label_bytes)], axis=1)
            data = rows.tobytes()
            self.digest.update(data)
            yield start, data


def effective_epsilons(secrets: EdgeSecrets, task: msg.TaskMeta) -> tuple[float, float | None]:
    """The stricter of the edge's own epsilon / label_epsilon and the aggregator's (the job's floor)."""
    job_label = msg.epsilon_field(task.label_epsilon, "label_epsilon") if task.label_epsilon else None
    return secrets.privacy.effective(msg.epsilon_field(task.epsilon), job_label)  # type: ignore[return-value]


def begin_release(ctx: WorkerContext, secrets: EdgeSecrets, features: str, task: msg.TaskMeta, r: int,
                  epsilon: float, label_epsilon: float | None) -> None:
    """Resume check, budget check and ledger entry, all before the first record of this release leaves."""
    secrets.privacy.begin_release(Release(data=secrets.data, features=features, epsilon=epsilon, r=r,
                                          label_epsilon=label_epsilon, job=ctx.job, worker=ctx.worker),
                                  task.resume_records, secrets.seed_is_new)


async def _upload(ctx: WorkerContext, secrets: EdgeSecrets, features: str, channel: Channel, task: msg.TaskMeta,
                  edge: torch.nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray,
                  reporter: Reporter) -> dict[str, Any]:
    epsilon, label_epsilon = effective_epsilons(secrets, task)
    check_labels(labels, task.num_classes, ctx.dataset_name or ctx.dataset_url)
    shape = feature_shape_of(edge, probe=probe_batch(images))
    r = int(np.prod(shape))
    feature_bytes = (r + 7) // 8
    label_bytes = 1 if task.num_classes <= 256 else 2
    record = feature_bytes + label_bytes
    begin_release(ctx, secrets, features, task, r, epsilon, label_epsilon)
    layout = {"num_samples": len(images), "feature_bytes": feature_bytes, "label_bytes": label_bytes,
              "feature_shape": list(shape), "epsilon": msg.format_epsilon(epsilon),
              "label_epsilon": "" if label_epsilon is None else msg.format_epsilon(label_epsilon)}
    noise = EdgePrivacy.noise(secrets.seed, secrets.data, features, "features")
    sent_labels = labels if label_epsilon is None else randomized_labels(
        EdgePrivacy.noise(secrets.seed, secrets.data, "", "labels", task.num_classes), labels, label_epsilon)
    stream = _RecordStream(edge, images, sent_labels, epsilon, task.chunk_records, label_bytes, noise)
    reporter.update(force=True, stage="extracting", received=task.resume_records, epsilon=epsilon,
                    label_epsilon=label_epsilon)
    done_bytes_s3 = await send_records(ctx, channel, stream, record, layout, task.resume_records, reporter)
    log.info("uploaded %d records of %d bytes via %s; edge compute %.3f s", len(images), record,
             ctx.transmitter, stream.compute_s)
    return {"samples": len(images), "compute_s": round(stream.compute_s, 3), "record_bytes": record,
            "feature_shape": list(shape), "epsilon": epsilon, "label_epsilon": label_epsilon,
            "bytes_s3": done_bytes_s3}


async def send_records(ctx: WorkerContext, channel: Channel, stream: Any, record: int, layout: dict[str, Any],
                       resume_records: int, reporter: Reporter) -> int:
    """Send an edge's record stream (``(first_index, bytes)`` chunks with a ``digest`` and ``compute_s``), then
    RECORDS_DONE; return the bytes that went to S3. Shared by the classification and detection edges.

    Over ws, records the aggregator already holds (``resume_records``) are skipped and the rest go in frames
    of at most ``FRAME_BYTES`` (whole records), so a lost connection costs at most one frame. Over S3 the
    whole object is uploaded and only its key crosses the websocket."""
    num_samples = int(layout["num_samples"])
    done: dict[str, Any] = {"num_samples": num_samples}
    reporter.update(upload_total=num_samples * record)  # the launcher's rate and ETA (launch/uplink.py)
    bytes_s3 = 0
    transmitter = ctx.s3()
    if transmitter is None:
        per_frame = max(1, FRAME_BYTES // record) * record
        for start, data in stream:
            skip = max(0, min(len(data) // record, resume_records - start))
            view = memoryview(data)
            for begin in range(skip * record, len(data), per_frame):
                await channel.send(Envelope(type=msg.RECORDS, job=ctx.job, worker=ctx.worker, kind="records",
                                            size=num_samples * record, offset=start * record + begin, meta=layout),
                                   view[begin:begin + per_frame])
            reporter.update(stage="uploading", received=start + len(data) // record,
                            compute_s=round(stream.compute_s, 3))
    else:
        key = ctx.payload_key(ctx.worker, "records.u8")
        reporter.update(force=True, stage="uploading", object_key=key)
        _, bytes_s3 = await asyncio.to_thread(transmitter.upload, key, (data for _, data in stream))
        done.update(object_key=key, layout=layout)
    done.update(sha256=stream.digest.hexdigest(), compute_s=stream.compute_s, bytes_up=channel.bytes_sent)
    await channel.send(_envelope(ctx, msg.RECORDS_DONE, done))
    return bytes_s3


def _envelope(ctx: WorkerContext, kind: str, meta: dict[str, Any]) -> Envelope:
    return Envelope(type=kind, job=ctx.job, worker=ctx.worker, meta=meta)
