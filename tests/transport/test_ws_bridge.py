"""fedmist.transport.ws_bridge's listener logic with stand-in picows objects: the bounded queue and its socket
back-pressure, fragments refused, close reasons, streaming to a consumer, the liveness probe, early TLS bytes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from picows import WSCloseCode, WSMsgType

from fedmist.transport import ws_bridge
from fedmist.transport.ws_bridge import TEXT, FrameListener, TlsFirst, _feed


@dataclass
class Socket:
    paused: list[str] = field(default_factory=list)

    def pause_reading(self) -> None:
        self.paused.append("pause")

    def resume_reading(self) -> None:
        self.paused.append("resume")


@dataclass
class Transport:
    underlying_transport: Socket = field(default_factory=Socket)
    closes: list[tuple[object, bytes]] = field(default_factory=list)
    pings: list[bytes] = field(default_factory=list)
    disconnected: bool = False
    is_close_frame_sent: bool = False

    def send_close(self, code: object, reason: bytes = b"") -> None:
        self.closes.append((code, reason))
        self.is_close_frame_sent = True

    def disconnect(self) -> None:
        self.disconnected = True

    def send_ping(self, payload: bytes) -> None:
        self.pings.append(payload)


@dataclass
class Frame:
    msg_type: object
    payload: bytes = b""
    fin: bool = True
    close_code: object = WSCloseCode.OK

    def get_payload_as_bytes(self) -> bytes:
        return self.payload

    def get_payload_as_memoryview(self) -> memoryview:
        return memoryview(self.payload)

    def get_close_code(self) -> object:
        return self.close_code

    def get_close_message(self) -> bytes:
        return self.payload


def _connected(max_queue: int = 4) -> tuple[FrameListener, Transport]:
    listener, transport = FrameListener(max_queue=max_queue), Transport()
    listener.on_ws_connected(transport)  # type: ignore[arg-type]
    return listener, transport


def test_a_full_queue_pauses_the_socket_until_a_frame_is_taken() -> None:
    async def run() -> None:
        listener, transport = _connected(max_queue=2)
        listener.on_ws_frame(transport, Frame(WSMsgType.BINARY, b"a"))  # type: ignore[arg-type]
        assert transport.underlying_transport.paused == []
        listener.on_ws_frame(transport, Frame(WSMsgType.BINARY, b"b"))  # type: ignore[arg-type]
        assert transport.underlying_transport.paused == ["pause"]  # the queue is full
        listener.on_ws_frame(transport, Frame(WSMsgType.BINARY, b"c"))  # type: ignore[arg-type]  # same read
        assert transport.underlying_transport.paused == ["pause"]
        assert await listener.next_frame() == b"a"
        assert transport.underlying_transport.paused == ["pause"]  # still 2 queued
        assert await listener.next_frame() == b"b"
        assert transport.underlying_transport.paused == ["pause", "resume"]
        listener.on_ws_frame(transport, Frame(WSMsgType.TEXT, b"hi"))  # type: ignore[arg-type]
        listener.on_ws_disconnected(transport)  # type: ignore[arg-type]
        assert [await listener.next_frame() for _ in range(3)] == [b"c", TEXT, None]  # queue first, then None

    asyncio.run(run())


@pytest.mark.parametrize("frame", [Frame(WSMsgType.BINARY, b"x", fin=False), Frame(WSMsgType.CONTINUATION, b"x")])
def test_fragmented_messages_close_the_connection(frame: Frame) -> None:
    listener, transport = _connected()
    listener.on_ws_frame(transport, frame)  # type: ignore[arg-type]
    assert transport.closes == [(WSCloseCode.PROTOCOL_ERROR, b"fragmented messages are not accepted")]
    assert transport.disconnected and not listener.frames


def test_a_close_frame_is_answered_and_its_reason_kept() -> None:
    listener, transport = _connected()
    listener.on_ws_frame(transport, Frame(WSMsgType.CLOSE, b"job done", close_code=WSCloseCode.GOING_AWAY))  # type: ignore[arg-type]
    assert listener.close_reason == "1001 (GOING_AWAY) job done"
    assert transport.closes == [(WSCloseCode.GOING_AWAY, b"")] and transport.disconnected
    listener, transport = _connected()
    listener.on_ws_frame(transport, Frame(WSMsgType.CLOSE, close_code=WSCloseCode.NO_INFO))  # type: ignore[arg-type]
    assert listener.close_reason == "0 (NO_INFO)" and transport.closes == [(WSCloseCode.OK, b"")]


def test_a_consumer_gets_queued_messages_first_then_live_ones() -> None:
    async def run() -> None:
        listener, transport = _connected()
        listener.on_ws_frame(transport, Frame(WSMsgType.BINARY, b"queued"))  # type: ignore[arg-type]
        got: list[bytes] = []

        def consumer(item) -> bool:
            got.append(bytes(item))
            return len(got) == 3

        task = asyncio.create_task(listener.consume(consumer))
        await asyncio.sleep(0)
        for payload in (b"live1", b"live2", b"after"):
            listener.on_ws_frame(transport, Frame(WSMsgType.BINARY, payload))  # type: ignore[arg-type]
        assert await task is True
        assert got == [b"queued", b"live1", b"live2"]
        assert list(listener.frames) == [b"after"]  # queued again once the consumer is done

    asyncio.run(run())


def test_what_a_consumer_raises_is_raised_by_consume_and_a_lost_connection_is_false() -> None:
    async def run() -> None:
        listener, transport = _connected()

        def broken(item) -> bool:
            raise ValueError("bad chunk")

        task = asyncio.create_task(listener.consume(broken))
        await asyncio.sleep(0)
        listener.on_ws_frame(transport, Frame(WSMsgType.BINARY, b"x"))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="^bad chunk$"):
            await task
        task = asyncio.create_task(listener.consume(lambda item: False))
        await asyncio.sleep(0)
        listener.on_ws_disconnected(transport)  # type: ignore[arg-type]
        assert await task is False

    asyncio.run(run())


def test_the_probe_needs_its_own_pong() -> None:
    async def run() -> None:
        listener, transport = _connected()
        probe = asyncio.create_task(listener.probe(5.0))
        await asyncio.sleep(0)
        assert transport.pings == [b"fedmist-probe-1"]
        listener.on_ws_frame(transport, Frame(WSMsgType.PONG, b"someone else's"))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert not probe.done()
        listener.on_ws_frame(transport, Frame(WSMsgType.PONG, b"fedmist-probe-1"))  # type: ignore[arg-type]
        assert await probe is True
        assert await listener.probe(0.01) is False  # nobody answers the second ping
        assert transport.pings == [b"fedmist-probe-1", b"fedmist-probe-2"]
        listener.on_ws_disconnected(transport)  # type: ignore[arg-type]
        assert await listener.probe(5.0) is False

    asyncio.run(run())


class Buffered(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self._buffer = bytearray(3)  # smaller than the data: delivered in pieces

    def get_buffer(self, sizehint: int) -> bytearray:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.received += self._buffer[:nbytes]


class Plain(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data


def test_early_bytes_are_fed_to_either_kind_of_protocol() -> None:
    buffered, plain = Buffered(), Plain()
    _feed(buffered, b"GET / HTTP/1.1")
    _feed(plain, b"GET / HTTP/1.1")
    assert bytes(buffered.received) == plain.received == b"GET / HTTP/1.1"


def test_too_many_bytes_before_the_handover_abort_the_connection() -> None:
    class Aborted:
        aborted = False

        def abort(self) -> None:
            self.aborted = True

    tls = TlsFirst(None, Plain, 1.0)  # type: ignore[arg-type]
    tls._transport = Aborted()  # type: ignore[assignment]
    tls.data_received(b"x" * ws_bridge._MAX_EARLY)
    assert not tls._transport.aborted and len(tls._early) == ws_bridge._MAX_EARLY  # type: ignore[union-attr]
    tls.data_received(b"x")
    assert tls._transport.aborted and len(tls._early) == 0  # type: ignore[union-attr]
