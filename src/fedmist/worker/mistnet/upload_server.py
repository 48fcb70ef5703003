"""The aggregator's side of MistNet's upload phase: authenticate edges, hand them the edge part, and stream
their feature records into the on-disk store (DESIGN sections 5.1, 5.4, 5.5 and 6).

Every inbound frame is validated; a bad peer gets an error reply and a log line naming it, and never takes the
aggregator down. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedmist.transport import ws
from fedmist.transport.base import Channel, TransportError, recv_each_idle
from fedmist.transport.gate import ConnectionGate
from fedmist.transport.read_sizing import ReadSizing
from fedmist.transport.security import Security
from fedmist.wire import messages as msg
from fedmist.wire.envelope import Envelope, Limits, ProtocolError
from fedmist.worker.admission import receive_hello, refuse_if_live, refused_at_gate, reply_error
from fedmist.worker.errors import JobFailure
from fedmist.worker.mistnet.edge_epsilon import check_edge_epsilon
from fedmist.worker.mistnet.feature_store import StoreManifest, WorkerStore, read_manifest
from fedmist.worker.mistnet.record_check import RecordCheck, RecordsRefused
from fedmist.worker.safe_path import safe_child

log = logging.getLogger("fedmist.aggregator")


@dataclass
class EdgeProgress:
    """What the aggregator knows about one edge; mirrored into status.json."""

    phase: str = "Connected"
    samples: int = 0
    received: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    compute_s: float = 0.0
    connections: int = 0  # sessions this edge opened (more than one: it reconnected and resumed)
    epsilon: str = ""  # the noise this edge applied, from its records layout ("" until its first records)
    label_epsilon: str = ""  # "" = labels in clear
    refused: str = ""  # why its records were refused (phase "Refused"): the job goes on without it


def task_fingerprint(task: msg.TaskMeta, edge_weights: bytes) -> str:
    """What makes stored records reusable: the task (less the resume offset) and the edge weights. Stores
    are kept per fingerprint, so features made for another epsilon, cut or model are never reused."""
    fields = task.model_dump(exclude={"resume_records"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode() + edge_weights).hexdigest()


@dataclass
class UploadPlan:
    """What every edge is told to do (the ``task`` message) and how the server is bounded."""

    job: str
    task: msg.TaskMeta
    edge_weights: bytes  # safetensors
    participants: int
    token: str
    store_root: Path
    hello_timeout: float = 30.0
    idle_timeout: float = 120.0
    @functools.cached_property
    def fingerprint(self) -> str:
        return task_fingerprint(self.task, self.edge_weights)

    s3: Any = None  # an S3Transmitter when TRANSMITTER=s3: records arrive as an object, not as frames
    key_for: Callable[[str], str] | None = None  # worker -> the only object key that worker may name
    feature_shape: tuple[int, ...] | None = None  # what the task's edge part produces (None: the first upload's)


@dataclass
class UploadServer:
    plan: UploadPlan
    on_change: Callable[[], None] = lambda: None
    edges: dict[str, EdgeProgress] = field(default_factory=dict)
    _sessions: dict[str, tuple[Channel, asyncio.Event]] = field(default_factory=dict)  # live connection per edge
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    gate: ConnectionGate = field(default_factory=ConnectionGate)

    def __post_init__(self) -> None:
        self.gate.fit(self.plan.participants)
        self.check = RecordCheck.for_task(self.plan.task, self.plan.feature_shape)

    def adopt_stored(self) -> list[str]:
        """Count uploads a previous run of this aggregator already verified and stored (a restart after a
        crash), so edges that finished are not waited for again. Returns the adopted workers."""
        adopted = []
        root = self.plan.store_root
        for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            manifest = read_manifest(folder)
            if (manifest is not None and manifest.complete and manifest.task == self.plan.fingerprint
                    and len(self.edges) < self.plan.participants and self._adoptable(folder.name, manifest)):
                self.edges[folder.name] = EdgeProgress(phase="Uploaded", samples=manifest.num_samples,
                                                       received=manifest.num_samples, epsilon=manifest.epsilon,
                                                       label_epsilon=manifest.label_epsilon)
                adopted.append(folder.name)
        if adopted:
            log.info("resuming with stored uploads of %s", ", ".join(adopted))
            self._mark_done()
        return adopted

    def _adoptable(self, name: str, manifest: StoreManifest) -> bool:
        """A stored upload whose layout the task's checks refuse (stored by an older release) is not adopted:
        its edge uploads again and is judged like any other."""
        try:
            self.check.pin(tuple(manifest.feature_shape))
        except RecordsRefused as exc:
            log.warning("not adopting the stored upload of %s: %s", name, exc)
            return False
        return True

    @property
    def complete(self) -> list[str]:
        return sorted(name for name, edge in self.edges.items() if edge.phase == "Uploaded")

    @property
    def refused(self) -> dict[str, str]:
        """Edges refused for their records, with the reason (they count as done: nobody waits for them)."""
        return {name: edge.refused for name, edge in sorted(self.edges.items()) if edge.refused}

    async def listen(self, host: str, port: int, security: Security | None = None) -> ws.Server:
        """Serve edges on ``host:port``. Each connection's read memory is sized for the records frames edges send
        (at most ``RECORDS_FRAME_BYTES`` of records), so 100 edges uploading at once cost about 100 KiB each, not the
        2 MiB a connection reads at once by default (``transport.read_sizing``; BENCHMARKS.md, population)."""
        return await ws.serve(self.handle, host, port, channel_limits(), security,
                              reads=ReadSizing.for_frames(msg.RECORDS_FRAME_BYTES))

    async def wait(self, timeout: float, min_complete: int) -> list[str]:
        """Wait until every participant uploaded, or ``timeout`` passed; return the complete edges.

        Raises TimeoutError when fewer than ``min_complete`` finished by the deadline, and JobFailure when
        refused edges leave fewer than ``min_complete`` (the job trains on the rest when they are enough).
        """
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            if len(self.complete) < min_complete:
                raise TimeoutError(
                    f"only {len(self.complete)} of {self.plan.participants} edges uploaded within {timeout:g} s "
                    f"(need {min_complete})"
                ) from None
        if len(self.complete) < min_complete:
            refused = "; ".join(f"{name}: {why}" for name, why in self.refused.items())
            raise JobFailure(f"only {len(self.complete)} of {self.plan.participants} edges uploaded (need "
                             f"{min_complete}); refused {refused}")
        return self.complete

    async def handle(self, channel: Channel) -> None:
        """One edge connection, start to finish. Never raises."""
        name = "?"
        if await refused_at_gate(self.gate, channel, self.plan.job):
            return
        try:
            hello_env, hello = await receive_hello(channel, self.plan.token, self.plan.job, self.plan.hello_timeout)
            await self._take_over(hello_env.worker)
            name = self._admit(hello_env, hello, channel.peer)
            finished = asyncio.Event()
            self._sessions[name] = (channel, finished)
            try:
                await self._serve_edge(channel, name, hello)
            finally:
                if self._sessions.get(name, (None,))[0] is channel:
                    del self._sessions[name]
                finished.set()
        except RecordsRefused as exc:
            self._refuse(name, str(exc))
            await reply_error(channel, self.plan.job, f"records refused: {exc}")
        except (ProtocolError, ValueError) as exc:
            log.warning("rejected %s (worker %s): %s", channel.peer, name, exc)
            await reply_error(channel, self.plan.job, str(exc))
        except TransportError as exc:
            log.warning("lost %s (worker %s): %s", channel.peer, name, exc)
            if name in self.edges and self.edges[name].phase != "Uploaded":
                self.edges[name].phase = "Disconnected"
                self.on_change()
        finally:
            self.gate.release()
            await channel.close()

    async def _take_over(self, name: str) -> None:
        """An authenticated edge that reconnects replaces its old connection when that one no longer answers
        (half-open after a network fault, it would otherwise block the resume until its idle timeout); while it
        still answers, the newcomer is refused (two edges given one name, or someone else holding the token).
        The old handler is closed and awaited, so its store is checkpointed before the new session reads the
        resume offset."""
        old = self._sessions.get(name)
        if old is None:
            return
        channel, finished = old
        await refuse_if_live(name, channel, lambda: self._sessions.get(name) is old)
        if self._sessions.get(name) is not old:
            return  # its handler ended (idle timeout) while the probe waited
        log.info("worker %s reconnected; dropping its previous connection from %s (it no longer answers)",
                 name, channel.peer)
        await channel.abort()
        try:
            await asyncio.wait_for(finished.wait(), self.plan.hello_timeout)
        except TimeoutError:
            raise ProtocolError(f"worker '{name}' is already connected") from None

    def _admit(self, envelope: Envelope, hello: msg.HelloMeta, peer: str) -> str:
        name = envelope.worker
        if name in self._sessions:
            raise ProtocolError(f"worker '{name}' is already connected")
        if name not in self.edges and len(self.edges) >= self.plan.participants:
            raise ProtocolError(f"worker '{name}' is not expected: all {self.plan.participants} participants known")
        self.edges.setdefault(name, EdgeProgress()).connections += 1
        log.info("worker %s connected from %s with %d samples", name, peer, hello.num_samples)
        return name

    async def _serve_edge(self, channel: Channel, name: str, hello: msg.HelloMeta) -> None:
        edge = self.edges[name]
        if edge.refused:
            raise ProtocolError(f"worker '{name}' was refused earlier in this job: {edge.refused}")
        edge.samples = hello.num_samples
        existing = read_manifest(safe_child(self.plan.store_root, name))
        if existing is not None and (existing.num_samples, existing.task) != (hello.num_samples, self.plan.fingerprint):
            existing = None  # made for another task or dataset: start afresh
        resume = existing.received if existing else 0
        if existing and existing.complete:
            edge.phase, edge.received = "Uploaded", existing.num_samples
            edge.epsilon, edge.label_epsilon = existing.epsilon, existing.label_epsilon
            await channel.send(self._envelope(msg.ACK, {"received": existing.num_samples, "complete": True}))
            self._mark_done()
            return
        task = self.plan.task.model_copy(update={"resume_records": resume})
        edge.bytes_down += await channel.send(
            self._envelope(msg.TASK, task.model_dump(), kind="safetensors"), self.plan.edge_weights
        )
        edge.phase = "Extracting"
        self.on_change()
        store: WorkerStore | None = None
        received_before, up_before = channel.bytes_received, edge.bytes_up  # bytes_up counts every session
        if resume:
            log.info("worker %s resumes its upload at record %d of %d", name, resume, hello.num_samples)
        last: list[Envelope] = []

        def take(envelope: Envelope, body: memoryview) -> bool:
            """One frame, inside the transport's read callback: records go from its read buffer straight to
            the store (no per-connection queue of copies); anything else ends the records stream."""
            nonlocal store
            edge.bytes_up = up_before + channel.bytes_received - received_before
            if envelope.type != msg.RECORDS:
                last.append(envelope)
                return True
            store = self._write_chunk(store, name, envelope, body, hello.num_samples)
            edge.phase, edge.received = "Uploading", store.manifest.received
            edge.epsilon, edge.label_epsilon = store.manifest.epsilon, store.manifest.label_epsilon
            self.on_change()
            return False

        try:
            await recv_each_idle(channel, take, self.plan.idle_timeout)
            done = msg.parse_meta(last[0], msg.RECORDS_DONE)
            if done.num_samples != hello.num_samples:
                raise ProtocolError(f"done with {done.num_samples} samples, hello said {hello.num_samples}")
            if done.object_key:
                edge.phase = "Downloading"
                self.on_change()
                store = await self._fetch_object(name, done, hello.num_samples)
                edge.bytes_up += store.manifest.num_samples * store.manifest.record_bytes
            elif store is None:
                store = self._open_store(name, hello.num_samples)
            self.check.pin(tuple(store.manifest.feature_shape))
            store.finish(done.sha256)
            edge.epsilon, edge.label_epsilon = store.manifest.epsilon, store.manifest.label_epsilon
            edge.phase, edge.compute_s, edge.received = "Uploaded", done.compute_s, done.num_samples
            edge.bytes_down += await channel.send(
                self._envelope(msg.ACK, {"received": done.num_samples, "complete": True})
            )
            log.info("worker %s uploaded %d samples (%d bytes)", name, done.num_samples, edge.bytes_up)
            self._mark_done()
        finally:
            if store is not None:
                store.checkpoint()
                store.close()

    def _write_chunk(self, store: WorkerStore | None, name: str, envelope: Envelope, body: memoryview,
                     num_samples: int) -> WorkerStore:
        meta = msg.parse_meta(envelope, msg.RECORDS)
        if meta.num_samples != num_samples:
            raise ProtocolError(f"records for {meta.num_samples} samples, hello said {num_samples}")
        self.check.layout(meta)
        if num_samples * (meta.feature_bytes + meta.label_bytes) > channel_limits().max_payload_bytes:
            raise ProtocolError(f"{num_samples} records of {meta.feature_bytes + meta.label_bytes} bytes exceed the "
                                f"upload limit of {channel_limits().max_payload_bytes} bytes")
        privacy = check_edge_epsilon(meta, self.plan.task).as_text()
        if store is None:
            store = WorkerStore.open(self.plan.store_root, name, num_samples=num_samples,
                                     feature_bytes=meta.feature_bytes, label_bytes=meta.label_bytes,
                                     feature_shape=meta.feature_shape, task=self.plan.fingerprint, privacy=privacy)
        layout = (store.manifest.feature_bytes, store.manifest.label_bytes, store.manifest.feature_shape)
        if layout != (meta.feature_bytes, meta.label_bytes, meta.feature_shape):
            raise ProtocolError("records layout changed during the upload")
        if (store.manifest.epsilon, store.manifest.label_epsilon) != (privacy["epsilon"], privacy["label_epsilon"]):
            raise ProtocolError("records epsilon changed during the upload")
        if envelope.size != num_samples * store.manifest.record_bytes:
            raise ProtocolError(f"records payload size {envelope.size} does not match {num_samples} records")
        self.check.records(body, tuple(meta.feature_shape), envelope.offset // store.manifest.record_bytes)
        store.write(envelope.offset, body)
        return store

    async def _fetch_object(self, name: str, done: msg.RecordsDoneMeta, num_samples: int) -> WorkerStore:
        """Download an edge's records object into its store, verifying size and hash on the way."""
        if self.plan.s3 is None or self.plan.key_for is None:
            raise ProtocolError("records sent as an object, but this job's transmitter is ws")
        expected = self.plan.key_for(name)
        if done.object_key != expected:
            raise ProtocolError(f"worker '{name}' named object {done.object_key!r}; its payloads live at {expected!r}")
        if done.layout is None or done.layout.num_samples != num_samples:
            raise ProtocolError("object upload without a records layout for the announced samples")
        layout = done.layout
        self.check.layout(layout)
        privacy = check_edge_epsilon(layout, self.plan.task).as_text()
        store = WorkerStore.open(self.plan.store_root, name, num_samples=num_samples, feature_bytes=layout.feature_bytes,
                                 label_bytes=layout.label_bytes, feature_shape=layout.feature_shape, task=self.plan.fingerprint,
                                 privacy=privacy)
        store.manifest.received = 0
        size = num_samples * store.manifest.record_bytes
        from fedmist.transport.s3 import S3Error

        record = store.manifest.record_bytes
        pending = bytearray()

        def aligned_write(offset: int, data: bytes) -> None:
            """S3 streams arbitrary block sizes; the store takes whole records."""
            pending.extend(data)
            whole = len(pending) // record * record
            if whole:
                chunk, at = bytes(pending[:whole]), offset + len(data) - len(pending)
                self.check.records(chunk, tuple(layout.feature_shape), at // record)
                store.write(at, chunk)
                del pending[:whole]

        try:
            await asyncio.to_thread(self.plan.s3.download, done.object_key, done.sha256, size, aligned_write)
        except S3Error as exc:
            raise ProtocolError(str(exc)) from None
        return store

    def _open_store(self, name: str, num_samples: int) -> WorkerStore:
        """The store of an edge that resumed with nothing left to send."""
        manifest = read_manifest(safe_child(self.plan.store_root, name))
        if manifest is None or (manifest.num_samples, manifest.task) != (num_samples, self.plan.fingerprint):
            raise ProtocolError("upload finished before any records arrived")
        return WorkerStore(safe_child(self.plan.store_root, name), manifest)

    def _refuse(self, name: str, reason: str) -> None:
        """Refuse an edge whose records do not fit the task, for the rest of the job: logged with the reason,
        recorded in its status entry, and counted as done so the job goes on with the others."""
        log.warning("refused worker %s: %s; the job goes on without its records", name, reason)
        if name in self.edges:
            self.edges[name].phase, self.edges[name].refused = "Refused", reason
        self._mark_done()

    def _mark_done(self) -> None:
        self.on_change()
        if len(self.complete) + len(self.refused) >= self.plan.participants:
            self._done.set()

    def _envelope(self, kind_type: str, meta: dict, kind: str = "none") -> Envelope:
        return Envelope(type=kind_type, job=self.plan.job, worker="aggregator", kind=kind, meta=meta)


def channel_limits() -> Limits:
    """The frame and payload bounds this server enforces (the transport applies the same ones)."""
    return Limits()
