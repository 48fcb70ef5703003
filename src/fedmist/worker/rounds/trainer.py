"""The FedAvg family on the edge (issue 3): wait for a round, train locally from the global weights, send them back.

Training runs in a worker thread while the event loop keeps reading the connection, so the websocket keeps
answering pings through long local epochs and a STOP that arrives mid-round ends training at once (exit 0).
If the connection drops, the trainer reconnects (bounded) and says HELLO again; the aggregator then gives it
the current global model in the next round it is selected for.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import torch

from fedmist.data.loaders import load_dataset
from fedmist.models import local_round
from fedmist.models.local_train import (
    LocalConfig,
    LocalResult,
    as_tensors,
    load_numpy_state,
    state_to_numpy,
)
from fedmist.models.parts import build_job_model
from fedmist.training import Trainer, build_trainer, check_metrics
from fedmist.transport.base import Channel, TransportError
from fedmist.transport.connect import connect_with_retry
from fedmist.wire import messages as msg
from fedmist.wire.arrays import decode_weights, encode_weights
from fedmist.wire.envelope import Envelope, Limits, ProtocolError
from fedmist.worker.context import WorkerContext
from fedmist.worker.errors import ConfigurationError, JobFailure, check_labels
from fedmist.worker.report import Reporter

log = logging.getLogger("fedmist.trainer")

CONNECT_DEADLINE_S = 120.0
PAYLOAD_TIMEOUT_S = 600.0
MAX_RECONNECTS = 5  # consecutive dropped connections without a finished round before the trainer gives up


class Stopped(Exception):
    """The aggregator said the job is over."""


class LocalData:
    """The edge's training (and optional validation) tensors, prepared once for every round."""

    def __init__(self, ctx: WorkerContext) -> None:
        try:
            images, labels = load_dataset(ctx.dataset_url, ctx.dataset_format or "idx")
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"dataset {ctx.dataset_name or ctx.dataset_url}: {str(exc).splitlines()[0]}") from None
        if len(images) == 0:
            raise ConfigurationError(f"dataset {ctx.dataset_name or ctx.dataset_url} is empty")
        train_idx, val_idx = local_round.local_rows(len(images), ctx.params)
        if isinstance(images, torch.Tensor):  # a user loader's tensors (format: python)
            train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        self.x, self.y = as_tensors(images[train_idx], labels[train_idx])
        self.val = as_tensors(images[val_idx], labels[val_idx]) if len(val_idx) else None


class RoundsTrainer:
    def __init__(self, ctx: WorkerContext, data: LocalData, reporter: Reporter) -> None:
        self.ctx = ctx
        self.data = data
        self.reporter = reporter
        self.model: torch.nn.Module | None = None
        self.trainer: Trainer | None = None
        self.compute_s = 0.0
        self.bytes_up = 0
        self.bytes_down = 0
        self.rounds_done = 0
        self.idle_timeout = max(600.0, 10 * ctx.params.round_timeout)
        self.carrier = ctx.carrier()  # inline frames (ws) or S3 objects
        self.s3_up = self.s3_down = 0  # weights moved as S3 objects (not seen by the channel's counters)

    def local_config(self, meta: msg.FitMeta, number: int) -> LocalConfig:
        """The trainer's own env wins, then the round's config, then the defaults: ``models.local_round``'s rule,
        which ``fedmist simulate`` shares; a garbled round config is the aggregator's protocol error."""
        try:
            return local_round.local_config(self.ctx.params, meta.config, self.ctx.worker, number, meta.rounds)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None

    def _build(self, meta: msg.FitMeta) -> tuple[torch.nn.Module, Trainer]:
        """The model the aggregator named and this worker's trainer (its own env ``trainer`` wins over the
        aggregator's); a bad import path is a configuration error (exit 2), not a protocol one."""
        name = meta.model or self.ctx.params.model
        check_labels(self.data.y.numpy(), meta.num_classes, self.ctx.dataset_name or self.ctx.dataset_url)
        try:
            model = build_job_model(name, num_classes=meta.num_classes)
            trainer = build_trainer(self.ctx.params.trainer or meta.trainer or None, self.ctx.params.extra)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        return model, trainer

    async def session(self, channel: Channel) -> None:
        """One connection: HELLO, then rounds until STOP (raises Stopped) or the connection fails."""
        await channel.send(Envelope(type=msg.HELLO, job=self.ctx.job, worker=self.ctx.worker, meta={
            "role": "trainer", "num_samples": len(self.data.y),
            "dataset": self.ctx.dataset_name}))
        pending: asyncio.Task | None = None
        while True:
            self.reporter.update(stage="waiting")
            envelope, body = await (pending or channel.recv(self.idle_timeout))
            pending = None
            if envelope.type == msg.STOP:
                raise Stopped(msg.parse_meta(envelope, msg.STOP).reason)
            meta = msg.parse_meta(envelope, msg.FIT)
            payload, via_object = await self.carrier.receive(channel, envelope, body, f"round-{envelope.round}",
                                                             PAYLOAD_TIMEOUT_S, Limits().max_payload_bytes)
            self.s3_down += via_object
            pending = await self.fit(channel, envelope.round, meta, payload)

    async def fit(self, channel: Channel, number: int, meta: msg.FitMeta, payload: bytearray) -> asyncio.Task | None:
        """Train one round in a thread while watching the channel, then send the result. Returns the receive
        task started for the watch (pending, or done if the next message already came), awaited next."""
        weights = decode_weights(payload)
        if self.model is None:
            self.model, self.trainer = self._build(meta)
        assert self.trainer is not None
        try:
            load_numpy_state(self.model, weights)
        except ValueError as exc:
            raise ProtocolError(f"round {number} weights: {exc}") from None
        del weights, payload
        config = self.local_config(meta, number)
        self.reporter.update(force=True, stage="training", round=number, rounds=meta.rounds)
        cancel = threading.Event()
        train = asyncio.ensure_future(asyncio.to_thread(
            self.trainer.train, self.model, self.data.x, self.data.y, config, cancel))
        watch = asyncio.ensure_future(channel.recv(self.idle_timeout))
        done, _ = await asyncio.wait({train, watch}, return_when=asyncio.FIRST_COMPLETED)
        if watch in done and not train.done():
            cancel.set()  # STOP, a broken connection or a protocol slip: the round's result is moot
            await train
            envelope, _ = watch.result()
            if envelope.type == msg.STOP:
                raise Stopped(msg.parse_meta(envelope, msg.STOP).reason)
            if envelope.type == msg.FIT and envelope.round > number:
                # this trainer was too slow: the aggregator closed round `number` without it and moved on
                log.warning("round %d abandoned: the aggregator started round %d", number, envelope.round)
                return watch
            raise ProtocolError(f"'{envelope.type}' arrived while round {number} was training")
        result = train.result()
        if not isinstance(result, LocalResult):
            raise ConfigurationError(f"trainer {type(self.trainer).__qualname__}.train returned "
                                     f"{type(result).__name__}, not a fedmist.training.LocalResult")
        self.compute_s += result.compute_s
        metrics = dict(result.metrics)
        if self.data.val is not None:
            where = f"trainer {type(self.trainer).__qualname__}.evaluate"
            try:
                val = check_metrics(await asyncio.to_thread(self.trainer.evaluate, self.model, *self.data.val), where)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
            metrics.update({f"val_{k}": v for k, v in val.items()})
        out = encode_weights(state_to_numpy(self.model))
        published = await self.carrier.publish(self.ctx.worker, f"round-{number}", out)
        del out
        sent = await self.carrier.send(channel, Envelope(
            type=msg.FIT_RESULT, job=self.ctx.job, worker=self.ctx.worker, round=number, kind="safetensors",
            meta={"num_samples": result.num_samples, "metrics": metrics, "compute_s": result.compute_s}), published)
        self.s3_up += published.object["size"] if published.object else 0
        self.rounds_done += 1
        log.info("round %d: %d samples in %.2f s, %s; sent %d bytes", number, result.num_samples,
                 result.compute_s, {k: round(v, 4) for k, v in metrics.items()}, sent)
        self.reporter.update(force=True, stage="waiting", round=number, compute_s=round(self.compute_s, 3),
                             bytes_up=self.bytes_up + self.s3_up + getattr(channel, "bytes_sent", 0),
                             bytes_down=self.bytes_down + self.s3_down + getattr(channel, "bytes_received", 0),
                             local_metrics=metrics)
        return watch


def run_rounds_trainer(ctx: WorkerContext, data_class: type = LocalData,
                       trainer_class: type[RoundsTrainer] = RoundsTrainer) -> dict[str, Any]:
    """Take part in rounds until the aggregator says STOP; return this edge's figures."""
    torch.set_num_threads(max(1, ctx.threads))
    reporter = Reporter(ctx.status_file, ctx.worker, "trainer")
    reporter.update(force=True, phase="Running", stage="loading")
    data = data_class(ctx)
    reporter.update(force=True, stage="connecting", samples=len(data.y))
    trainer = trainer_class(ctx, data, reporter)
    reason = asyncio.run(_run(ctx, trainer))
    figures = {"samples": len(data.y), "rounds": trainer.rounds_done, "compute_s": round(trainer.compute_s, 3),
               "bytes_up": trainer.bytes_up + trainer.s3_up, "bytes_down": trainer.bytes_down + trainer.s3_down,
               "stop_reason": reason}
    reporter.update(force=True, phase="Succeeded", stage="done", **figures)
    return figures


async def _run(ctx: WorkerContext, trainer: RoundsTrainer) -> str:
    """Connect, serve rounds, reconnect after a dropped connection; every attempt is bounded."""
    url = ctx.aggregator_url()  # wss when the job has a CA (the launcher makes one per job)
    drops = 0
    while True:
        if drops > MAX_RECONNECTS:
            raise JobFailure(f"aggregator {url}: connection dropped {drops} times without a finished round")
        rounds_before = trainer.rounds_done
        try:
            channel = await connect_with_retry(url, deadline_s=CONNECT_DEADLINE_S, security=ctx.security())
        except TransportError as exc:
            raise JobFailure(f"aggregator {url}: {exc}") from None
        try:
            await trainer.session(channel)
        except Stopped as stop:
            log.info("aggregator ended the job: %s", stop)
            return str(stop)
        except ProtocolError as exc:
            raise JobFailure(f"aggregator {url}: {exc}") from None
        except TransportError as exc:
            drops = 1 if trainer.rounds_done > rounds_before else drops + 1
            log.warning("connection to %s lost (%s); reconnecting", url, exc)
        finally:
            trainer.bytes_up += getattr(channel, "bytes_sent", 0)
            trainer.bytes_down += getattr(channel, "bytes_received", 0)
            await channel.close()
