"""How a large payload (model weights) gets from one peer to another: inline over the websocket, or as an S3
object whose key and hash are all that crosses the websocket (DESIGN sections 3 and 6).

Why a seam: the round engine should not care which transmitter the job chose. Both carriers take the same
envelope and bytes and hand the receiver the same bounded buffer; only the S3 one publishes an object first.
An object is published once and announced to many peers (the global model goes to every selected trainer
from one upload). The receiver computes the key it expects from the sender's name and the round itself and
refuses any other, so an authenticated peer cannot point the aggregator at another worker's object; the
download is checked against the announced size (before allocation, against the receiver's limit) and SHA-256.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from fedmist.transport.base import Channel
from fedmist.transport.payload import recv_payload, recv_payload_into, send_payload
from fedmist.wire.envelope import Envelope, ProtocolError

OBJECT_META = "object"  # the meta entry that announces an S3 object: {"key", "sha256", "size"}


@dataclass(frozen=True)
class Published:
    """A payload ready to announce: the bytes themselves (ws) or the object that holds them (S3)."""

    data: bytes | bytearray | memoryview
    object: dict[str, Any] | None = None


class Carrier(Protocol):
    """Moves one payload per message; ``name`` is the payload's name under its sender (``round-3``)."""

    async def publish(self, sender: str, name: str, data: bytes | bytearray | memoryview) -> Published: ...

    async def send(self, channel: Channel, envelope: Envelope, published: Published) -> int: ...

    async def receive(self, channel: Channel, first: Envelope, body: memoryview, name: str, timeout: float,
                      limit: int) -> tuple[bytearray, int]: ...

    async def receive_into(self, channel: Channel, first: Envelope, body: memoryview, name: str, timeout: float,
                           limit: int, sink: Callable[[int, memoryview], None]) -> int: ...

    async def cleanup(self) -> int: ...


class WsCarrier:
    """The default: payloads travel inline as chunked frames (``transport.payload``)."""

    async def publish(self, sender: str, name: str, data: bytes | bytearray | memoryview) -> Published:
        return Published(data)

    async def send(self, channel: Channel, envelope: Envelope, published: Published) -> int:
        return await send_payload(channel, envelope, published.data)

    async def receive(self, channel: Channel, first: Envelope, body: memoryview, name: str, timeout: float,
                      limit: int) -> tuple[bytearray, int]:
        """Return the assembled payload and the payload bytes moved (counted by the channel already: 0)."""
        if first.meta.get(OBJECT_META) is not None:
            raise ProtocolError(f"'{first.type}' announces an S3 object, but this job's transmitter is ws")
        _, payload = await recv_payload(channel, first, body, timeout, limit)
        return payload, 0

    async def receive_into(self, channel: Channel, first: Envelope, body: memoryview, name: str, timeout: float,
                           limit: int, sink: Callable[[int, memoryview], None]) -> int:
        """Hand the payload to ``sink`` chunk by chunk as the frames arrive; return 0 (counted by the channel)."""
        if first.meta.get(OBJECT_META) is not None:
            raise ProtocolError(f"'{first.type}' announces an S3 object, but this job's transmitter is ws")
        await recv_payload_into(channel, first, body, timeout, limit, sink)
        return 0

    async def cleanup(self) -> int:
        return 0


class S3Carrier:
    """Payloads as S3 objects at ``key_for(sender, name + '.safetensors')``; frames carry only the reference.

    ``transmitter`` is a :class:`fedmist.transport.s3.S3Transmitter` (boto3 is imported only for S3 jobs);
    its blocking calls run in threads so the event loop keeps answering pings meanwhile.
    """

    def __init__(self, transmitter: Any, key_for: Callable[[str, str], str], job_prefix: str) -> None:
        self.transmitter = transmitter
        self.key_for = key_for
        self.job_prefix = job_prefix

    async def publish(self, sender: str, name: str, data: bytes | bytearray | memoryview) -> Published:
        key = self.key_for(sender, f"{name}.safetensors")
        view = memoryview(data).cast("B")
        part = 8 * 1024 * 1024
        sha, size = await asyncio.to_thread(
            self.transmitter.upload, key, (view[i:i + part] for i in range(0, len(view), part)))
        return Published(b"", {"key": key, "sha256": sha, "size": size})

    async def send(self, channel: Channel, envelope: Envelope, published: Published) -> int:
        if published.object is None:
            raise ValueError("S3Carrier.send needs a payload published by S3Carrier.publish")
        meta = {**envelope.meta, OBJECT_META: published.object}
        sent = await channel.send(replace(envelope, kind="none", size=0, offset=0, blake3="", meta=meta))
        return sent + int(published.object["size"])

    async def receive(self, channel: Channel, first: Envelope, body: memoryview, name: str, timeout: float,
                      limit: int) -> tuple[bytearray, int]:
        """Download the announced object into one buffer of its declared size; return it and its size."""
        key, sha, size = self._reference(first, name, limit)
        buffer = bytearray(size)

        def sink(offset: int, data: bytes) -> None:
            if offset + len(data) > size:  # a slice past the end would grow the buffer
                raise ProtocolError(f"object {key!r} is longer than its announced {size} bytes")
            buffer[offset:offset + len(data)] = data

        await self._download(key, sha, size, sink, timeout)
        return buffer, size

    async def receive_into(self, channel: Channel, first: Envelope, body: memoryview, name: str, timeout: float,
                           limit: int, sink: Callable[[int, memoryview], None]) -> int:
        """Stream the announced object into ``sink`` (called from a download thread); return its size.

        The sink must tolerate being called after this returns on a timeout (the thread cannot be cancelled):
        the aggregator's sink is told to discard first.
        """
        key, sha, size = self._reference(first, name, limit)

        def bounded(offset: int, data: bytes) -> None:
            if offset + len(data) > size:
                raise ProtocolError(f"object {key!r} is longer than its announced {size} bytes")
            sink(offset, memoryview(data))

        await self._download(key, sha, size, bounded, timeout)
        return size

    def _reference(self, first: Envelope, name: str, limit: int) -> tuple[str, str, int]:
        """The announced object's key, sha256 and size, each checked (the key must be the one we expect)."""
        ref = first.meta.get(OBJECT_META)
        if not isinstance(ref, dict) or set(ref) != {"key", "sha256", "size"}:
            raise ProtocolError(f"'{first.type}' must announce an object {{key, sha256, size}} on an S3 job")
        key, sha, size = ref["key"], ref["sha256"], ref["size"]
        expected = self.key_for(first.worker, f"{name}.safetensors")
        if key != expected:
            raise ProtocolError(f"worker '{first.worker}' named object {key!r}; expected {expected!r}")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= limit:
            raise ProtocolError(f"'{first.type}' object of {size!r} bytes outside 0..{limit}")
        if not isinstance(sha, str) or len(sha) != 64:
            raise ProtocolError(f"'{first.type}' object sha256 must be 64 hex digits")
        return key, sha, size

    async def _download(self, key: str, sha: str, size: int, sink: Callable[[int, bytes], None],
                        timeout: float) -> None:
        from fedmist.transport.s3 import S3Error

        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.transmitter.download, key, sha, size, sink), timeout)
        except S3Error as exc:
            raise ProtocolError(str(exc)) from None
        except TimeoutError:
            raise ProtocolError(f"download of {key!r} took over {timeout:g} s "
                                f"(started {time.monotonic() - started:.0f} s ago)") from None

    async def cleanup(self) -> int:
        """Remove every object of this job; return how many."""
        return await asyncio.to_thread(self.transmitter.delete_prefix, self.job_prefix)
