"""The aggregator's connections in the round engine: admit trainers, hand out rounds, take results as they come.

One handler task per trainer connection reads that trainer's frames for the whole job; the round loop
(``rounds.aggregator``) only opens rounds, sends FIT and waits on :class:`OpenRound`. For a running-sum
strategy (FedAvg, FedProx, the FedOpt family) a result is folded into the sum chunk by chunk as its frames
arrive (``update_stream``), so the aggregator holds the global model and the sum, never a whole update; the
strategies that need every update at once (median, trimmed mean, Krum) get each one whole when its last
chunk arrives. Either way updates are taken one at a time (a one-slot semaphore): one buffer or one open fold
and its undo journal, however many trainers report at once. Late
results are read to the end and dropped without being buffered. A bad peer gets a logged reason and an error
reply and never takes the aggregator down; a rejected update (NaN, wrong shape) is logged and the round goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fedmist.strategy import FitResult, Strategy
from fedmist.strategy.aggregate import Layout
from fedmist.strategy.streaming import FoldClosed, PartialFold
from fedmist.transport.base import Channel, TransportError
from fedmist.transport.carrier import OBJECT_META, Carrier, WsCarrier
from fedmist.transport.gate import ConnectionGate
from fedmist.transport.payload import drain_payload
from fedmist.wire import messages as msg
from fedmist.wire.arrays import decode_weights
from fedmist.wire.envelope import Envelope, Limits, ProtocolError
from fedmist.worker.admission import receive_hello, refuse_if_live, refused_at_gate, reply_error
from fedmist.worker.rounds.update_bounds import check_update_size, sample_count_problem
from fedmist.worker.rounds.update_stream import UpdateStream

log = logging.getLogger("fedmist.aggregator")


@dataclass
class WorkerState:
    """The aggregator's view of one trainer, mirrored into status.json (like upload_server's EdgeProgress)."""

    phase: str = "Connected"  # Connected | Training | Reported | Lost | Rejected | Stopped
    samples: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    compute_s: float = 0.0
    rounds: int = 0  # accepted results
    late: int = 0
    rejected: int = 0
    lost: int = 0
    connections: int = 0
    local_metrics: dict[str, float] = field(default_factory=dict)  # what the trainer measured last round


@dataclass
class OpenRound:
    """One round's bookkeeping; ``changed`` fires on every result, rejection or loss."""

    number: int
    selected: set[str]
    accepted: list[str] = field(default_factory=list)
    rejected: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    bytes_up: int = 0
    bytes_down: int = 0
    compute_s: dict[str, float] = field(default_factory=dict)  # local training seconds per accepted worker
    arrivals: dict[str, tuple[float, int]] = field(default_factory=dict)  # monotonic time, bytes of each accepted update

    def settled(self) -> bool:
        """Every selected worker answered, was rejected, or is gone: nothing more can arrive."""
        return self.selected <= set(self.accepted) | self.rejected | self.lost

    def pending(self) -> list[str]:
        return sorted(self.selected - set(self.accepted) - self.rejected - self.lost)


@dataclass(frozen=True)
class Verdict:
    """What became of one received update: accepted, refused (``error``), or late (the round ended first)."""

    via_object: int  # payload bytes that came as an S3 object (ws frames are counted by the channel)
    error: str | None = None
    late: bool = False


@dataclass
class RoundServer:
    job: str
    token: str
    participants: int
    strategy: Strategy
    idle_timeout: float
    payload_timeout: float
    hello_timeout: float = 30.0
    max_update_bytes: int = 0  # largest update accepted (the model's size plus slack); 0: the frame limits' bound
    update_bytes: int = 0  # the exact size of an update (the global model's layout, encoded); 0: not checked
    max_samples: int = 0  # the job's cap on an update's num_samples (0: only the HELLO's count bounds it)
    limits: Limits = field(default_factory=Limits)
    on_change: Callable[[], None] = lambda: None
    carrier: Carrier = field(default_factory=WsCarrier)  # inline frames (ws) or S3 objects (transport.carrier)
    spool_dir: Path | None = None  # where a streamed update's undo journal lives (a temporary file; None: $TMPDIR)
    workers: dict[str, WorkerState] = field(default_factory=dict)
    current: OpenRound | None = None
    stopping: bool = False
    departures: list[str] = field(default_factory=list)  # disconnections not yet booked to a round
    gate: ConnectionGate = field(default_factory=ConnectionGate)  # connections open at once, and per-address rate
    _sessions: dict[str, Channel] = field(default_factory=dict)
    _joined: asyncio.Event = field(default_factory=asyncio.Event)
    _slot: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    def __post_init__(self) -> None:
        self.gate.fit(self.participants)

    @property
    def connected(self) -> list[str]:
        return sorted(self._sessions)

    async def wait_for_workers(self, wanted: int, timeout: float) -> list[str]:
        """Wait (at most ``timeout`` s) until ``wanted`` trainers are connected; return who is connected."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self._sessions) < wanted and loop.time() < deadline:
            self._joined.clear()
            try:
                await asyncio.wait_for(self._joined.wait(), deadline - loop.time())
            except TimeoutError:
                break
        return self.connected

    # ---- rounds ----------------------------------------------------------------------------------------
    def open_round(self, number: int, selected: list[str]) -> OpenRound:
        self.current = OpenRound(number, set(selected))
        return self.current

    async def send_fit(self, rnd: OpenRound, meta: msg.FitMeta, weights: bytes) -> None:
        """Send the global model to every selected trainer at once; a failed send counts the worker lost.
        With S3 the model is uploaded once and every trainer gets its key."""
        published = await self.carrier.publish("aggregator", f"round-{rnd.number}", weights)

        async def one(name: str) -> None:
            channel = self._sessions.get(name)
            if channel is None:
                self._lose(name, "not connected when the round started")
                return
            envelope = Envelope(type=msg.FIT, job=self.job, worker="aggregator", round=rnd.number,
                                kind="safetensors", meta=meta.model_dump())
            try:
                sent = await self.carrier.send(channel, envelope, published)
            except (TransportError, ProtocolError) as exc:
                self._lose(name, f"sending round {rnd.number} failed: {exc}")
                return
            self.workers[name].bytes_down += sent
            self.workers[name].phase = "Training"
            rnd.bytes_down += sent

        await asyncio.gather(*(one(name) for name in sorted(rnd.selected)))
        self.on_change()

    async def stop_all(self, reason: str, timeout: float = 10.0) -> None:
        """Tell every trainer the job is over, then give them ``timeout`` s to hang up."""
        self.stopping = True
        for name, channel in list(self._sessions.items()):
            try:
                await asyncio.wait_for(channel.send(self._envelope(msg.STOP, {"reason": reason[:2000]})), timeout)
                self.workers[name].phase = "Stopped"
            except (TransportError, ProtocolError, TimeoutError) as exc:
                log.warning("could not send stop to %s: %s", name, exc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._sessions and loop.time() < deadline:
            await asyncio.sleep(0.05)

    # ---- connections -----------------------------------------------------------------------------------
    async def handle(self, channel: Channel) -> None:
        """One trainer connection for the whole job. Never raises."""
        name = "?"
        if await refused_at_gate(self.gate, channel, self.job):
            return
        try:
            hello_env, hello = await receive_hello(channel, self.token, self.job, self.hello_timeout)
            old = self._sessions.get(hello_env.worker)
            if old is not None:  # refused while it answers; replaced in _admit once it does not
                await refuse_if_live(hello_env.worker, old, lambda: self._sessions.get(hello_env.worker) is old)
            name = self._admit(hello_env, hello, channel)
            while not self.stopping:
                before = channel.bytes_received
                envelope, body = await channel.recv(self.idle_timeout)
                await self._on_message(name, channel, envelope, body, before)
        except ProtocolError as exc:
            log.warning("rejected %s (worker %s): %s", channel.peer, name, exc)
            await reply_error(channel, self.job, str(exc))
        except TransportError as exc:
            if not self.stopping:
                log.warning("lost %s (worker %s): %s", channel.peer, name, exc)
        finally:
            self.gate.release()
            if self._sessions.get(name) is channel:
                del self._sessions[name]
                if not self.stopping:
                    self._lose(name, "disconnected")
            await channel.close()

    def _admit(self, envelope: Envelope, hello: msg.HelloMeta, channel: Channel) -> str:
        name = envelope.worker
        if name not in self.workers and len(self.workers) >= self.participants:
            raise ProtocolError(f"worker '{name}' is not expected: all {self.participants} participants known")
        old = self._sessions.pop(name, None)
        if old is not None:  # a reconnecting trainer whose old connection no longer answers (half-open)
            self._lose(name, "replaced by a new connection")
            asyncio.ensure_future(old.abort())  # it no longer answers: no close handshake to wait for
        state = self.workers.setdefault(name, WorkerState())
        state.samples, state.phase = hello.num_samples, "Connected"
        state.connections += 1
        self._sessions[name] = channel
        self._joined.set()
        log.info("worker %s connected from %s with %d samples", name, channel.peer, hello.num_samples)
        self.on_change()
        return name

    async def _on_message(self, name: str, channel: Channel, envelope: Envelope, body: memoryview,
                          before: int) -> None:
        if envelope.type == msg.ERROR:
            raise TransportError(f"trainer reported: {msg.parse_meta(envelope, msg.ERROR).reason[:300]}")
        meta: msg.FitResultMeta = msg.parse_meta(envelope, msg.FIT_RESULT)
        check_update_size(envelope, self.update_bytes)  # before a byte of it is read, buffered or downloaded
        rnd, state = self.current, self.workers[name]
        wanted = (rnd is not None and not rnd.closed and envelope.round == rnd.number and name in rnd.selected
                  and name not in rnd.accepted and name not in rnd.rejected and name not in rnd.lost)
        if not wanted:
            await drain_payload(channel, envelope, body, self.payload_timeout)
            state.late += 1
            state.bytes_up += channel.bytes_received - before
            log.info("discarded a late result of %s for round %d", name, envelope.round)
            self.on_change()
            return
        async with self._slot:  # one update at a time: one fold open, one undo journal, one buffer
            if (problem := sample_count_problem(meta.num_samples, state.samples, self.max_samples)) is not None:
                await drain_payload(channel, envelope, body, self.payload_timeout)
                verdict = Verdict(0, error=problem)
            elif self.strategy.folds_slices:
                verdict = await self._fold_streaming(name, channel, envelope, body, meta, rnd)
            else:
                verdict = await self._fold_whole(name, channel, envelope, body, meta, rnd)
            received = channel.bytes_received - before + verdict.via_object
            state.bytes_up += received
            rnd.bytes_up += received
            if verdict.late:  # the deadline passed while the last chunks were in flight
                state.late += 1
                self.on_change()
                return
            if verdict.error is not None:
                log.warning("rejected the round %d update of %s: %s", rnd.number, name, verdict.error)
                rnd.rejected.add(name)
                state.rejected += 1
                state.phase = "Rejected"
            else:
                rnd.accepted.append(name)
                rnd.compute_s[name] = meta.compute_s
                rnd.arrivals[name] = (time.monotonic(), received)
                state.rounds += 1
                state.phase = "Reported"
                state.compute_s = round(state.compute_s + meta.compute_s, 3)
                state.local_metrics = dict(meta.metrics)
        rnd.changed.set()
        self.on_change()

    async def _fold_whole(self, name: str, channel: Channel, envelope: Envelope, body: memoryview,
                          meta: msg.FitResultMeta, rnd: OpenRound) -> "Verdict":
        """Receive the update whole, validate it, then accumulate (strategies that need every update)."""
        payload, via_object = await self.carrier.receive(
            channel, envelope, body, f"round-{envelope.round}", self.payload_timeout, self._limit)
        if rnd.closed:
            return Verdict(via_object, late=True)
        try:
            weights = decode_weights(payload)
            self.strategy.accumulate(FitResult(name, weights, meta.num_samples, dict(meta.metrics)))
        except (ProtocolError, ValueError) as exc:
            return Verdict(via_object, error=str(exc))
        return Verdict(via_object)

    async def _fold_streaming(self, name: str, channel: Channel, envelope: Envelope, body: memoryview,
                              meta: msg.FitResultMeta, rnd: OpenRound) -> "Verdict":
        """Fold the update into the strategy's sum chunk by chunk as it arrives (no copy of it is held).

        The header is judged before any value is folded; a non-finite value in any chunk rolls back what the
        update already folded (exactly: ``strategy.streaming``); a round that ends while the update is still
        arriving rolls it back too and books it late. A transport failure mid-update rolls back and propagates.
        """
        def open_fold(layout: Layout) -> PartialFold:
            if rnd.closed:
                raise FoldClosed(f"round {rnd.number} closed")
            try:
                return self.strategy.open_fold(name, meta.num_samples, layout, self.spool_dir)
            except RuntimeError as exc:  # the round ended between the check and here (an S3 download thread)
                raise FoldClosed(str(exc)) from None

        size = _announced_size(envelope)
        if size < 8:
            await drain_payload(channel, envelope, body, self.payload_timeout)
            return Verdict(0, error=f"weights payload of {size} bytes is too short for safetensors")
        stream = UpdateStream(size, open_fold)
        try:
            via_object = await self.carrier.receive_into(
                channel, envelope, body, f"round-{envelope.round}", self.payload_timeout, self._limit, stream.feed)
        except BaseException:
            stream.closed = True  # an S3 download thread may still call feed: it must only discard
            stream.rollback()
            raise
        stream.finish()
        if stream.error is not None:
            stream.rollback()
            folded = stream.fold.folded if stream.fold is not None else 0
            undone = f"rolled back {folded} values already folded" if folded else "nothing was folded"
            return Verdict(via_object, error=f"{stream.error} ({undone})")
        if stream.closed or rnd.closed or stream.fold is None:
            stream.rollback()
            return Verdict(via_object, late=True)
        try:
            self.strategy.commit_fold(stream.fold)
        except FoldClosed:
            return Verdict(via_object, late=True)
        return Verdict(via_object)

    @property
    def _limit(self) -> int:
        return self.max_update_bytes or self.limits.max_payload_bytes

    def take_departures(self) -> list[str]:
        """Workers lost since the last call (a worker that dies between rounds is booked to the next one)."""
        gone, self.departures = self.departures, []
        return gone

    def _lose(self, name: str, why: str) -> None:
        rnd = self.current
        if name in self.workers:
            self.workers[name].phase = "Lost"
            self.departures.append(name)
        if rnd is not None and not rnd.closed and name in rnd.selected and name not in rnd.accepted:
            rnd.lost.add(name)
            self.workers[name].lost += 1
            rnd.changed.set()
            log.warning("worker %s lost in round %d: %s", name, rnd.number, why)
        self.on_change()

    def _envelope(self, kind: str, meta: dict) -> Envelope:
        return Envelope(type=kind, job=self.job, worker="aggregator", meta=meta)


def _announced_size(envelope: Envelope) -> int:
    """The update's size: its S3 object's (checked again by the carrier) or its frames' declared size."""
    ref = envelope.meta.get(OBJECT_META)
    if isinstance(ref, dict) and type(ref.get("size")) is int:
        return int(ref["size"])
    return envelope.size
