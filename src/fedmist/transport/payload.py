"""Large binary payloads (model weights) as a run of frames: send in chunks, assemble into one bounded buffer.

Why: a websocket frame is capped at ``Limits.max_chunk_bytes`` (4 MiB) so no peer can make another buffer an
unbounded message, yet a model may be gigabytes. The sender cuts the payload into chunks whose headers carry
the whole ``size``, the chunk's ``offset`` and the chunk's own BLAKE3 digest (checked by the envelope decoder on
arrival); only the first frame carries the message meta. The receiver allocates exactly the declared size
once (after checking it against its own limit), copies every chunk into place, and insists that chunks come in
order, belong to the same message, and fill the buffer exactly -- so memory is one payload, never more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fedmist.transport.base import Channel, DeadlineExceeded
from fedmist.wire.envelope import Envelope, ProtocolError

#: Chunk size a sender uses (a receiver accepts up to ``Limits.max_chunk_bytes``). 1 MiB, not the 4 MiB limit:
#: each chunk is hashed, framed, masked and copied several times on both sides, and at 1 MiB those passes
#: stay in cache -- the sender's CPU per byte halves (BENCHMARKS.md, transport throughput).
DEFAULT_CHUNK_BYTES = 1024 * 1024


async def send_payload(channel: Channel, envelope: Envelope, data: bytes | bytearray | memoryview,
                       chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Send ``data`` as one message of ``ceil(len / chunk_bytes)`` frames; return the bytes put on the wire.

    ``envelope`` supplies type/job/worker/round/kind/meta; size, offset and blake3 are set per frame. An
    empty payload is still one frame (size 0), so the receiver always sees the message.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    view = memoryview(data).cast("B")
    size = len(view)
    sent = 0
    offset = 0
    while True:
        body = view[offset:offset + chunk_bytes]
        frame = replace(envelope, size=size, offset=offset, blake3="",
                        meta=envelope.meta if offset == 0 else {})
        sent += await channel.send(frame, body)
        offset += len(body)
        if offset >= size:
            return sent


class ChunkOrder:
    """The rules every chunk of one message obeys, whether it is buffered or consumed as it comes.

    The first envelope fixes the message (type, round, worker, size, kind); later ones must match it and
    continue exactly where the previous chunk ended. Payloads over ``limit`` are refused before any allocation.
    """

    def __init__(self, first: Envelope, limit: int) -> None:
        if first.offset != 0:
            raise ProtocolError(f"'{first.type}' payload starts at offset {first.offset}, expected 0")
        if first.size > limit:
            raise ProtocolError(f"'{first.type}' payload of {first.size} bytes exceeds the limit of {limit}")
        self.first = first
        self.size = first.size
        self.filled = 0

    @property
    def complete(self) -> bool:
        return self.filled == self.size

    def check(self, envelope: Envelope, body: memoryview | bytes) -> int:
        """Check that the chunk continues this message; return where it ends."""
        same = (envelope.type, envelope.round, envelope.worker, envelope.size, envelope.kind)
        want = (self.first.type, self.first.round, self.first.worker, self.first.size, self.first.kind)
        if same != want:
            raise ProtocolError(f"chunk of '{envelope.type}' round {envelope.round} interleaved with "
                                f"'{self.first.type}' round {self.first.round}")
        if envelope.offset != self.filled:
            raise ProtocolError(f"chunk at offset {envelope.offset}, expected {self.filled}")
        end = self.filled + len(body)
        if end > self.size:
            raise ProtocolError(f"chunk ends at {end}, beyond the declared size {self.size}")
        if len(body) == 0 and not self.complete:
            raise ProtocolError("empty chunk in an unfinished payload")
        return end


class PayloadAssembler(ChunkOrder):
    """Collects the chunks of one message into a buffer of exactly the declared size."""

    def __init__(self, first: Envelope, limit: int) -> None:
        super().__init__(first, limit)
        self.buffer = bytearray(first.size)

    def add(self, envelope: Envelope, body: memoryview | bytes) -> None:
        """Copy one chunk into place after checking it continues this message."""
        end = self.check(envelope, body)
        self.buffer[self.filled:end] = body
        self.filled = end


async def recv_payload(channel: Channel, first: Envelope, body: memoryview, timeout: float,
                       limit: int) -> tuple[Envelope, bytearray]:
    """Finish receiving the message whose first frame is ``(first, body)``; at most ``timeout`` seconds in all.

    Returns the first envelope (with the message meta) and the assembled payload.
    """
    assembler = PayloadAssembler(first, limit)
    assembler.add(first, body)

    def take(envelope: Envelope, chunk: memoryview) -> bool:
        assembler.add(envelope, chunk)
        return assembler.complete

    await _receive_rest(channel, first, timeout, assembler, take)
    return first, assembler.buffer


async def recv_payload_into(channel: Channel, first: Envelope, body: memoryview, timeout: float, limit: int,
                            sink: Callable[[int, memoryview], None]) -> None:
    """Like :func:`recv_payload`, but each chunk goes to ``sink(offset, chunk)`` as it arrives, never into a
    payload-sized buffer (the aggregator folds an update while receiving it). ``sink`` must not keep ``chunk``:
    it may be a view into the transport's read buffer.
    """
    order = ChunkOrder(first, limit)

    def take(envelope: Envelope, chunk: memoryview) -> bool:
        end = order.check(envelope, chunk)
        sink(order.filled, chunk)
        order.filled = end
        return order.complete

    take(first, body)
    await _receive_rest(channel, first, timeout, order, take)


async def _receive_rest(channel: Channel, first: Envelope, timeout: float, order: ChunkOrder,
                        take: Callable[[Envelope, memoryview], bool]) -> None:
    """Feed the message's remaining frames to ``take``; ProtocolError once the message's ``timeout`` is spent."""
    if order.complete:
        return
    try:
        await channel.recv_each(take, timeout)
    except DeadlineExceeded:
        raise ProtocolError(f"'{first.type}' payload incomplete after {timeout:g} s "
                            f"({order.filled} of {first.size} bytes)") from None


async def drain_payload(channel: Channel, first: Envelope, body: memoryview, timeout: float) -> int:
    """Read and drop the rest of a message nobody wants (a late update); return its size. No buffer is kept."""
    filled = first.offset + len(body)
    if filled >= first.size:
        return first.size

    def drop(envelope: Envelope, chunk: memoryview) -> bool:
        nonlocal filled
        if envelope.type != first.type or envelope.offset != filled:
            raise ProtocolError(f"chunk of '{envelope.type}' at {envelope.offset} while discarding "
                                f"'{first.type}' at {filled}")
        filled += len(chunk)
        return filled >= first.size

    try:
        await channel.recv_each(drop, timeout)
    except DeadlineExceeded:
        raise ProtocolError(f"'{first.type}' payload incomplete after {timeout:g} s while discarding it") from None
    return first.size
