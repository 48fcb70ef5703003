"""Payloads streamed over a real ws connection: chunks consumed inside picows' callback (no copy out of its read
buffer) arrive exact and in order, whether they were queued first or handed over directly; a bad chunk, a stall
and a hang-up each end the payload with their own error and leave nothing behind on the connection."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import pytest

from fedmist.transport import ws
from fedmist.transport.base import TransportError
from fedmist.transport.payload import recv_payload, recv_payload_into, send_payload
from fedmist.wire.envelope import Envelope, ProtocolError, encode

MIB = 1024 * 1024
PAYLOAD = os.urandom(6 * MIB + 12345)
FIRST = Envelope(type="w", job="j", worker="c", kind="raw")


def _chunk(index: int, count: int = 2) -> tuple[Envelope, bytes]:
    body = PAYLOAD[index * MIB:(index + 1) * MIB]
    return replace(FIRST, size=count * MIB, offset=index * MIB), body


@pytest.mark.parametrize("wait_first", [0.0, 0.5])
def test_a_payload_arrives_exact_after_queued_and_direct_chunks(wait_first, serve_and):
    """With ``wait_first`` the receiver starts late, so the first chunks wait in the queue (copied) and the
    rest are consumed straight from picows' buffer; either way the bytes, the count and the order are exact."""
    seen: dict[str, object] = {}

    async def receiver(channel: ws.WsChannel) -> None:
        await asyncio.sleep(wait_first)
        seen["queued"] = len(channel._listener.frames)
        first, body = await channel.recv(10)
        _, payload = await recv_payload(channel, first, body, 10, len(PAYLOAD))
        seen["exact"] = payload == PAYLOAD
        pieces: list[tuple[int, bytes]] = []
        first, body = await channel.recv(10)
        await recv_payload_into(channel, first, body, 10, len(PAYLOAD),
                                lambda offset, chunk: pieces.append((offset, bytes(chunk))))
        seen["offsets"] = [offset for offset, _ in pieces]
        seen["into_exact"] = b"".join(piece for _, piece in pieces) == PAYLOAD
        after, _ = await channel.recv(10)  # the consumer is gone: the next message is an ordinary one
        seen["after"] = after.type
        seen["received"] = channel.bytes_received
        await channel.send(Envelope(type="ack", job="j", worker="s"))

    async def sender(url: str) -> int:
        channel = await ws.connect(url)
        sent = await send_payload(channel, FIRST, PAYLOAD)
        sent += await send_payload(channel, FIRST, PAYLOAD)
        sent += await channel.send(Envelope(type="after", job="j", worker="c"))
        await channel.recv(10)
        await channel.close()
        return sent

    sent = serve_and(receiver, sender)
    assert seen["exact"] is True and seen["into_exact"] is True and seen["after"] == "after"
    assert seen["offsets"] == list(range(0, len(PAYLOAD), MIB))
    assert seen["received"] == sent
    if wait_first:
        assert seen["queued"] >= 4  # the late start really did exercise the queued path


def test_a_tampered_chunk_fails_the_payload_and_the_connection_goes_on(serve_and):
    seen: dict[str, str] = {}

    async def receiver(channel: ws.WsChannel) -> None:
        first, body = await channel.recv(10)
        with pytest.raises(ProtocolError) as refused:
            await recv_payload(channel, first, body, 10, 2 * MIB)
        seen["error"] = str(refused.value)
        after, _ = await channel.recv(10)
        seen["after"] = after.type
        await channel.send(Envelope(type="ack", job="j", worker="s"))

    async def sender(url: str) -> None:
        channel = await ws.connect(url)
        await channel.send(*_chunk(0))
        frame = bytearray(encode(*_chunk(1)))
        frame[-1] ^= 0xFF
        await channel.send_raw(frame)
        await channel.send(Envelope(type="after", job="j", worker="c"))
        await channel.recv(10)
        await channel.close()

    serve_and(receiver, sender)
    assert seen == {"error": "body blake3 mismatch", "after": "after"}


def test_a_stalled_payload_times_out_with_its_progress_and_leaves_no_consumer(serve_and):
    seen: dict[str, object] = {}

    async def receiver(channel: ws.WsChannel) -> None:
        first, body = await channel.recv(10)
        with pytest.raises(ProtocolError) as stalled:
            await recv_payload(channel, first, body, 0.5, 2 * MIB)
        seen["error"] = str(stalled.value)
        await channel.send(Envelope(type="go", job="j", worker="s"))
        late, chunk = await channel.recv(10)  # the late chunk queues for recv: no stale consumer took it
        seen["late"] = (late.offset, bytes(chunk) == _chunk(1)[1])

    async def sender(url: str) -> None:
        channel = await ws.connect(url)
        await channel.send(*_chunk(0))
        await channel.recv(10)  # "go": the receiver has given up on the payload
        await channel.send(*_chunk(1))
        await asyncio.sleep(0.3)
        await channel.close()

    serve_and(receiver, sender)
    assert seen["error"] == f"'w' payload incomplete after 0.5 s ({MIB} of {2 * MIB} bytes)"
    assert seen["late"] == (MIB, True)


def test_a_hang_up_mid_payload_is_a_transport_error(serve_and):
    seen: dict[str, str] = {}

    async def receiver(channel: ws.WsChannel) -> None:
        first, body = await channel.recv(10)
        with pytest.raises(TransportError) as lost:
            await recv_payload(channel, first, body, 10, 3 * MIB)
        seen["error"] = str(lost.value)

    async def sender(url: str) -> None:
        channel = await ws.connect(url)
        await channel.send(*_chunk(0, count=3))
        await channel.send(*_chunk(1, count=3))
        await asyncio.sleep(0.2)
        await channel.close()

    serve_and(receiver, sender)
    assert seen["error"].startswith("127.0.0.1:") and seen["error"].endswith("connection closed (1000 (OK))")
