"""Chunked payloads: frames carry offset/size/blake3, the receiver assembles exactly the declared size."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from fedmist.models.lenet import lenet5
from fedmist.transport.base import Channel
from fedmist.transport.payload import PayloadAssembler, drain_payload, recv_payload, send_payload
from fedmist.wire.arrays import encode_weights, raw_parameter_bytes
from fedmist.wire.envelope import Envelope, Limits, ProtocolError, decode, encode


class QueueChannel(Channel):
    """One direction of an in-memory link: frames are really encoded and decoded (sizes, hashes)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.peer = "memory"
        self.limits = limits or Limits()
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.bytes_sent = 0

    async def send(self, envelope: Envelope, body=b"") -> int:
        frame = encode(envelope, body)
        self.bytes_sent += len(frame)
        await self.frames.put(frame)
        return len(frame)

    async def recv(self, timeout: float) -> tuple[Envelope, memoryview]:
        frame = await asyncio.wait_for(self.frames.get(), timeout)
        return decode(frame, self.limits)

    async def close(self) -> None:
        pass


def _fit(meta: dict | None = None) -> Envelope:
    return Envelope(type="fit", job="j", worker="w", round=3, kind="raw", meta=meta or {"config": {"x": 1}})


def test_large_payload_travels_in_1mib_chunks_and_reassembles_exactly() -> None:
    data = np.random.default_rng(0).integers(0, 256, size=2 * 1024 * 1024 + 123, dtype=np.uint8).tobytes()

    async def scenario() -> tuple[list[Envelope], Envelope, bytearray]:
        channel = QueueChannel()
        await send_payload(channel, _fit(), data)
        frames = [decode(f)[0] for f in list(channel.frames._queue)]  # type: ignore[attr-defined]
        first, body = await channel.recv(1)
        return frames, *(await recv_payload(channel, first, body, timeout=5, limit=len(data)))

    frames, first, payload = asyncio.run(scenario())
    assert [f.offset for f in frames] == [0, 1024 * 1024, 2 * 1024 * 1024]
    assert {f.size for f in frames} == {len(data)}
    assert frames[0].meta == {"config": {"x": 1}} and frames[1].meta == {} and frames[2].meta == {}
    assert all(len(f.blake3) == 64 for f in frames) and len({f.blake3 for f in frames}) == 3
    assert first.round == 3 and len(payload) == len(data) and bytes(payload) == data


def test_payload_over_the_receivers_limit_is_refused_before_allocation() -> None:
    with pytest.raises(ProtocolError, match="exceeds the limit of 100"):
        PayloadAssembler(Envelope(type="fit", job="j", worker="w", kind="raw", size=101), limit=100)


def test_chunks_must_continue_in_order_and_belong_to_the_message() -> None:
    first = Envelope(type="fit", job="j", worker="w", round=1, kind="raw", size=8)
    assembler = PayloadAssembler(first, limit=8)
    assembler.add(first, b"abcd")
    with pytest.raises(ProtocolError, match="offset 6, expected 4"):
        assembler.add(Envelope(type="fit", job="j", worker="w", round=1, kind="raw", size=8, offset=6), b"gh")
    with pytest.raises(ProtocolError, match="interleaved"):
        assembler.add(Envelope(type="fit", job="j", worker="w", round=2, kind="raw", size=8, offset=4), b"efgh")
    with pytest.raises(ProtocolError, match="beyond the declared size"):
        assembler.add(Envelope(type="fit", job="j", worker="w", round=1, kind="raw", size=8, offset=4), b"efghi")
    assembler.add(Envelope(type="fit", job="j", worker="w", round=1, kind="raw", size=8, offset=4), b"efgh")
    assert assembler.complete and bytes(assembler.buffer) == b"abcdefgh"


def test_a_tampered_chunk_is_rejected_by_its_hash() -> None:
    frame = bytearray(encode(Envelope(type="fit", job="j", worker="w", kind="raw", size=4), b"abcd"))
    frame[-1] ^= 1
    with pytest.raises(ProtocolError, match="blake3 mismatch"):
        decode(bytes(frame))


def test_an_incomplete_payload_fails_at_its_deadline() -> None:
    async def scenario() -> None:
        channel = QueueChannel()
        await send_payload(channel, _fit(), b"x" * 10, chunk_bytes=4)
        first, body = await channel.recv(1)
        await channel.recv(1)  # lose the middle chunk: the third then arrives at the wrong offset
        await recv_payload(channel, first, body, timeout=1, limit=10)

    with pytest.raises(ProtocolError, match="offset 8, expected 4"):
        asyncio.run(scenario())


def test_drain_reads_a_late_payload_to_its_end_without_keeping_it() -> None:
    async def scenario() -> tuple[int, int]:
        channel = QueueChannel()
        await send_payload(channel, _fit(), b"y" * 10, chunk_bytes=3)
        first, body = await channel.recv(1)
        return await drain_payload(channel, first, body, timeout=1), channel.frames.qsize()

    assert asyncio.run(scenario()) == (10, 0)


def test_lenet5_weights_cost_at_most_1_02x_their_float32_bytes_on_the_wire() -> None:
    torch.manual_seed(0)
    weights = {k: v.numpy() for k, v in lenet5().state_dict().items()}
    raw = raw_parameter_bytes(weights)
    assert raw == 61_706 * 4

    async def scenario() -> int:
        channel = QueueChannel()
        return await send_payload(channel, Envelope(
            type="fit_result", job="mnist-fedavg", worker="edge1", round=10, kind="safetensors",
            meta={"num_samples": 30000, "metrics": {"train_loss": 0.5, "train_accuracy": 0.8}, "compute_s": 3.2}),
            encode_weights(weights))

    wire = asyncio.run(scenario())
    assert raw < wire <= 1.02 * raw, f"{wire} bytes on the wire for {raw} raw bytes ({wire / raw:.4f}x)"
