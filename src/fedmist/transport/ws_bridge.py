"""picows' callbacks turned into what a :class:`~fedmist.transport.ws.WsChannel` awaits, and TLS with a named peer.

Why picows: it reads straight into one reusable buffer, unmasks in place and masks while copying into its write
buffer, so a byte is copied about half as often as with the ``websockets`` library -- the receiver's CPU per
payload byte is what bounds fedmist's throughput (BENCHMARKS.md, transport throughput).
Why a bridge: picows hands each websocket frame to a callback, valid only during that call; a channel's
``recv`` wants the next frame when it asks. The listener copies each fedmist frame out once into a queue of at
most ``max_queue`` frames (plus what one read of the socket held) and stops reading the socket while that queue is
full, so a fast peer is held back by TCP, never buffered without bound. A payload's chunks need not wait in that
queue: while a channel streams a payload (``consume``), each message goes to the channel's consumer inside
picows' callback, straight from picows' read buffer, so the receiver copies each payload byte once, into its
destination (BENCHMARKS.md, transport throughput).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

log = logging.getLogger("fedmist.transport")

#: What a failed server-side TLS handshake most likely means, for the aggregator's log.
_HANDSHAKE_HINTS = {
    "TLSV1_ALERT_UNKNOWN_CA": "the client does not trust the CA that signed this aggregator's certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the client rejected this aggregator's certificate",
    "HTTP_REQUEST": "the client spoke plain ws to the wss port",
    "WRONG_VERSION_NUMBER": "the client did not speak TLS",
}

#: A text websocket message in the queue (fedmist frames are binary; ``recv`` refuses it there).
TEXT = object()

#: Takes one whole websocket message -- a memoryview into picows' read buffer, valid only during the call, which
#: the consumer must neither keep nor let escape -- or TEXT; returns True once it wants no more messages.
Consumer = Callable[[memoryview | object], bool]


class FrameListener(WSListener):
    """Queues whole binary websocket messages for ``recv``; records why the connection ended."""

    def __init__(self, max_queue: int = 4, on_connected: Callable[["FrameListener"], None] | None = None) -> None:
        self.transport: WSTransport | None = None
        self.frames: deque[bytes | object] = deque()
        self.max_queue = max_queue
        self.closed = False
        self.close_reason = ""  # "1000 (OK)" style, or "" when the peer sent no close frame
        self._on_connected = on_connected
        self._arrived: asyncio.Event = asyncio.Event()
        self._writable: asyncio.Event = asyncio.Event()
        self._writable.set()
        self._paused = False
        self._consumer: Consumer | None = None
        self._consumer_error: Exception | None = None
        self._pong: asyncio.Future[bool] | None = None  # the answer to the liveness probe in flight
        self._probe_payload = b""
        self._probes = 0

    # --- picows callbacks ----------------------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self._on_connected is not None:
            self._on_connected(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind in (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION):
            if kind is WSMsgType.CONTINUATION or not frame.fin:
                # fedmist sends every frame as one unfragmented message; refusing fragments keeps one message
                # within picows' frame-size limit (a fragmented one could grow past it here).
                transport.send_close(WSCloseCode.PROTOCOL_ERROR, b"fragmented messages are not accepted")
                transport.disconnect()
                return
            if self._consumer is not None:  # installed only while the queue is empty: order is kept
                self._feed_consumer(frame.get_payload_as_memoryview() if kind is WSMsgType.BINARY else TEXT)
                return
            self.frames.append(frame.get_payload_as_bytes() if kind is WSMsgType.BINARY else TEXT)
            self._arrived.set()
            if len(self.frames) >= self.max_queue and not self._paused:
                transport.underlying_transport.pause_reading()
                self._paused = True
        elif kind is WSMsgType.PONG:
            pong = self._pong
            if pong is not None and not pong.done() and frame.get_payload_as_bytes() == self._probe_payload:
                pong.set_result(True)
        elif kind is WSMsgType.CLOSE:
            code = frame.get_close_code()
            reason = (frame.get_close_message() or b"").decode(errors="replace")[:120]
            self.close_reason = f"{int(code.value)} ({code.name}){' ' + reason if reason else ''}"
            if not transport.is_close_frame_sent:
                transport.send_close(code if code is not WSCloseCode.NO_INFO else WSCloseCode.OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if self._pong is not None and not self._pong.done():
            self._pong.set_result(False)
        self._arrived.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _feed_consumer(self, item: memoryview | object) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            done = consumer(item)
        except Exception as exc:  # noqa: BLE001 - handed to the coroutine in ``consume``, which raises it
            self._consumer_error, done = exc, True
        if done:
            self._consumer = None
            self._arrived.set()

    # --- what the channel awaits ---------------------------------------------------------------------------
    async def next_frame(self) -> bytes | object | None:
        """The next queued message, or None once the connection is gone and the queue is empty."""
        while not self.frames:
            if self.closed:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        return self._pop()

    def _pop(self) -> bytes | object:
        item = self.frames.popleft()
        if self._paused and len(self.frames) < self.max_queue and self.transport is not None:
            self._paused = False
            self.transport.underlying_transport.resume_reading()
        return item

    async def consume(self, consumer: Consumer) -> bool:
        """Hand messages to ``consumer`` until it returns True; False if the connection ended first.

        Messages queued before the call go first (as bytes); later ones are handed over as they arrive, inside
        picows' callback, without being copied. What ``consumer`` raises is raised here. Cancelling the wait
        (a deadline) removes the consumer, and messages queue again from then on.
        """
        while self.frames:
            if consumer(self._pop()):
                return True
        self._consumer, self._consumer_error = consumer, None
        try:
            while self._consumer is not None and not self.closed:
                self._arrived.clear()
                await self._arrived.wait()
        finally:
            finished = self._consumer is None
            self._consumer = None
        error, self._consumer_error = self._consumer_error, None
        if error is not None:
            raise error
        return finished

    async def probe(self, timeout: float) -> bool:
        """Send a websocket ping of our own and wait at most ``timeout`` s for its pong (picows' auto-pong answers
        in the peer's read callback, so a busy but live peer answers; a half-open connection never does).
        Concurrent probes share one ping. Should picows' own idle ping (30 s without traffic) be awaiting its pong
        at that moment, picows takes ours as its answer and the probe says False: the safe side, a reconnect then
        replaces the old connection. Why not picows' ``measure_roundtrip_time``: its pong future is left to fail
        unobserved when the connection drops after the wait gave up."""
        transport = self.transport
        if self.closed or transport is None or transport.is_close_frame_sent:
            return False
        if self._pong is None or self._pong.done():
            self._probes += 1
            self._probe_payload = b"fedmist-probe-%d" % self._probes
            self._pong = asyncio.get_running_loop().create_future()
            transport.send_ping(self._probe_payload)
        try:
            async with asyncio.timeout(timeout):
                answered = await asyncio.shield(self._pong)
        except TimeoutError:
            return False
        return answered and not self.closed

    async def writable(self) -> None:
        """Return once the socket's write buffer is below its high-water mark (or the connection is gone)."""
        await self._writable.wait()


_MAX_EARLY = 64 * 1024  # bytes a TLS client may send before the handover (an HTTP upgrade request is ~300)


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Deliver ``data`` to a protocol as its transport would (picows' protocol is a BufferedProtocol)."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view))).cast("B")
            count = min(len(buffer), len(view))
            buffer[:count] = view[:count]
            protocol.buffer_updated(count)
            view = view[count:]
    else:
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(data)


class TlsFirst(asyncio.Protocol):
    """A server connection's first protocol: run the TLS handshake, then hand the TLS transport to picows.

    Why not ``create_server(ssl=...)``: asyncio drops a failed server handshake silently and never tells the
    TLS object whom it talked to, so an aggregator could not log which peer failed and why. Here the peer is
    known from the start, and a failure is one line: ``rejected <peer>: TLS handshake failed: <reason>``.
    """

    def __init__(self, context: ssl.SSLContext, make_protocol: Callable[[], asyncio.BaseProtocol],
                 timeout: float) -> None:
        self._context = context
        self._make_protocol = make_protocol
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._early = bytearray()  # what the client sent right after the handshake, before the handover
        self._handed_over = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.pause_reading()  # nothing may be read before the TLS layer takes the socket over
        peername = transport.get_extra_info("peername") or ("?", 0)
        self._task = asyncio.get_running_loop().create_task(self._upgrade(transport, f"{peername[0]}:{peername[1]}"))

    async def _upgrade(self, transport: asyncio.Transport, peer: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(transport, self, self._context, server_side=True,
                                       ssl_handshake_timeout=self._timeout)
        except ssl.SSLError as exc:
            reason = exc.reason or type(exc).__name__
            hint = _HANDSHAKE_HINTS.get(reason, "")
            log.warning("rejected %s: TLS handshake failed: %s%s", peer, reason, f" ({hint})" if hint else "")
            transport.abort()
            return
        except (ConnectionError, EOFError) as exc:
            # a client that refuses this server's certificate often resets before its alert is read
            log.warning("rejected %s: TLS handshake failed: the client hung up (%s; a client that does not trust "
                        "the CA that signed this aggregator's certificate does this)", peer, type(exc).__name__)
            transport.abort()
            return
        except (OSError, TimeoutError) as exc:
            log.warning("rejected %s: TLS handshake failed: %s", peer, str(exc) or type(exc).__name__)
            transport.abort()
            return
        if tls is None:  # the client hung up during the handshake
            return
        if transport.is_closing() or tls.is_closing():
            return
        protocol = self._make_protocol()
        tls.set_protocol(protocol)
        self._handed_over = True
        protocol.connection_made(tls)
        if self._early:
            _feed(protocol, bytes(self._early))
            self._early.clear()

    def data_received(self, data: bytes) -> None:
        """Bytes decrypted in the same step that finished the handshake (the client's HTTP upgrade request)
        reach this protocol before the handover; keep them, bounded, for the websocket protocol."""
        self._early += data
        if len(self._early) > _MAX_EARLY:
            log.warning("rejected a client: %d bytes before its websocket handshake", len(self._early))
            self._early.clear()
            if self._transport is not None:
                self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        pass
