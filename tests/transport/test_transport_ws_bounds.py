"""The picows-based ws transport's own bounds: a flood is held back by TCP (at most 4 frames queued per
connection, plus what one read buffer held; none lost), and fragmented or text websocket messages are refused."""

from __future__ import annotations

import asyncio

import pytest
from picows import WSMsgType

from fedmist.transport import ws
from fedmist.transport.base import TransportError
from fedmist.wire.envelope import Envelope, ProtocolError, encode

CHUNK = 256 * 1024


def test_a_flood_is_held_back_by_tcp_and_arrives_whole_in_order(serve_and):
    seen: dict[str, object] = {}

    async def slow_reader(channel: ws.WsChannel) -> None:
        await asyncio.sleep(1.0)  # the client sends 40 MiB meanwhile; this side must not buffer it
        seen["queued_while_idle"] = len(channel._listener.frames)
        offsets = []
        for _ in range(160):
            envelope, body = await channel.recv(10)
            assert bytes(body[:1]) == bytes([envelope.offset // CHUNK % 251])
            offsets.append(envelope.offset)
        seen["offsets"] = offsets
        await channel.send(Envelope(type="ack", job="j", worker="s"))

    async def flood(url: str) -> str:
        channel = await ws.connect(url)
        for i in range(160):
            body = bytes([i % 251]) * CHUNK
            await channel.send(Envelope(type="w", job="j", worker="c", kind="raw", size=160 * CHUNK,
                                        offset=i * CHUNK), body)
        envelope, _ = await channel.recv(10)
        await channel.close()
        return envelope.type

    assert serve_and(slow_reader, flood) == "ack"
    # the listener stops reading at 4 queued frames; picows still delivers the complete frames already in the one
    # read buffer it holds (2 MiB: at most 8 of these), so the bound is 4 + 8 frames -- not the 160 sent
    queued = seen["queued_while_idle"]
    assert isinstance(queued, int) and 4 <= queued <= 4 + ws._READ_BUFFER // CHUNK
    assert seen["offsets"] == [i * CHUNK for i in range(160)]


@pytest.mark.parametrize("case", ["fragmented", "text"])
def test_fragmented_and_text_messages_are_refused(case, serve_and):
    outcome: dict[str, str] = {}

    async def reader(channel: ws.WsChannel) -> None:
        try:
            await channel.recv(10)
        except (TransportError, ProtocolError) as exc:
            outcome["error"] = str(exc)

    async def client(url: str) -> None:
        channel = await ws.connect(url)
        transport = channel._listener.transport
        frame = encode(Envelope(type="t", job="j", worker="c", kind="raw"), b"x" * 100)
        if case == "fragmented":
            transport.send(WSMsgType.BINARY, frame[:50], fin=False)
            transport.send(WSMsgType.CONTINUATION, frame[50:], fin=True)
            with pytest.raises(TransportError) as closed:
                await channel.recv(10)
            outcome["client"] = str(closed.value)
        else:
            transport.send(WSMsgType.TEXT, b"hello")
            await asyncio.sleep(0.5)
        await channel.close()

    serve_and(reader, client)
    if case == "fragmented":
        assert outcome["error"].startswith("127.0.0.1:") and outcome["error"].endswith("connection closed (no close frame)")
        assert outcome["client"].endswith("connection closed (1002 (PROTOCOL_ERROR) fragmented messages are not accepted)")
    else:
        assert outcome["error"] == "text websocket message; fedmist frames are binary"
