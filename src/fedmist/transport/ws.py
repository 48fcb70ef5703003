"""Websocket transmitter (the default): binary websocket messages, one fedmist frame each, over picows.

Compression is off (picows has none; packed bits and float weights do not compress) and the websocket frame
size limit is the fedmist frame limit, so an oversized frame is refused before it is buffered whole. Fragmented
websocket messages are refused (fedmist never sends them). See ws_bridge.py for why picows and the bounds.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from picows import WSAutoPingStrategy, WSCloseCode, WSError, WSMsgType, ws_connect
from picows.picows import WSProtocol

from fedmist.transport import handshake
from fedmist.transport.base import (
    PROBE_TIMEOUT_S,
    AuthenticationError,
    Channel,
    DeadlineExceeded,
    FrameConsumer,
    TransportError,
)
from fedmist.transport.read_sizing import CappedReads, ReadSizing
from fedmist.transport.security import Security
from fedmist.transport.ws_bridge import TEXT, FrameListener, TlsFirst
from fedmist.wire.envelope import Envelope, Limits, ProtocolError, decode, encode

log = logging.getLogger(__name__)

Handler = Callable[["WsChannel"], Awaitable[None]]

_NOT_OUR_CA = "the CA this worker trusts did not sign the aggregator's certificate"
#: OpenSSL verify codes -> what they usually mean here (2, 18, 19, 20: issuer unknown to the trusted CA;
#: 10: expired; 62/64: the certificate does not name the address the worker dialled).
_VERIFY_HINTS = {2: _NOT_OUR_CA, 18: _NOT_OUR_CA, 19: _NOT_OUR_CA, 20: _NOT_OUR_CA,
                 10: "the aggregator's certificate has expired",
                 62: "the aggregator's certificate does not name the address this worker dialled",
                 64: "the aggregator's certificate does not name the address this worker dialled"}

#: Settings both ends share: dead-peer detection by ping (ping after 30 s without inbound data, hang up when no
#: pong comes within 30 s more -- about the 60 s the websockets-based transport allowed), and a first read
#: buffer that holds a whole 1 MiB chunk frame (it grows to at most the frame limit).
_PING = {"enable_auto_ping": True, "auto_ping_idle_timeout": 30, "auto_ping_reply_timeout": 30,
         "enable_auto_pong": True}
_READ_BUFFER = 2 * 1024 * 1024
_PICOWS_LOG = "fedmist.transport.picows"  # picows logs every connection at INFO; fedmist keeps its warnings
_MAX_QUEUE = 4  # frames a connection buffers before it stops reading its socket
_CLOSE_TIMEOUT = 5.0


class WsChannel(Channel):
    """A :class:`Channel` over one websocket connection."""

    def __init__(self, listener: FrameListener, peer: str, limits: Limits) -> None:
        self._listener = listener
        self.peer = peer
        self.limits = limits
        # no keys until the handshake (transport.handshake) authenticated the peer; then one key and one frame
        # counter per direction: frames are MAC'd with their position, so none can be replayed or reordered
        self._send_key: bytes | None = None
        self._recv_key: bytes | None = None
        self._sent_frames = 0
        self._received_frames = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    def begin_session(self, send_key: bytes, recv_key: bytes) -> None:
        self._send_key, self._recv_key = send_key, recv_key
        self._sent_frames = self._received_frames = 0

    def seal(self, envelope: Envelope, body: bytes | bytearray | memoryview = b"") -> bytes:
        """The frame :meth:`send` would put on the wire next, MAC'd for its place in the session (the place is
        taken: tests use this to alter a frame before :meth:`send_raw`)."""
        frame = encode(envelope, body, self._send_key, self._sent_frames)
        if self._send_key is not None:
            self._sent_frames += 1
        return frame

    def _open(self, frame: bytes | memoryview) -> tuple[Envelope, memoryview]:
        envelope, body = decode(frame, self.limits, self._recv_key, self._received_frames)
        if self._recv_key is not None:
            self._received_frames += 1
        return envelope, body

    @property
    def local_address(self) -> tuple[str, int]:
        """This end's (host, port), as the peer sees it on loopback."""
        transport = self._listener.transport
        sockname = transport.underlying_transport.get_extra_info("sockname") if transport else None
        return (sockname[0], sockname[1]) if sockname else ("?", 0)

    def _closed_error(self, doing: str) -> TransportError:
        return TransportError(f"{self.peer}: connection closed{doing} ({self._listener.close_reason or 'no close frame'})")

    async def send(self, envelope: Envelope, body: bytes | bytearray | memoryview = b"") -> int:
        # inline, not in a thread: BLAKE3 hashes a 1 MiB chunk in ~0.2 ms, less than a thread hand-off costs.
        # Nothing awaits between sealing and send_raw handing the frame to the socket, so frames leave in the
        # order of their counter even when several tasks send on one channel.
        frame = self.seal(envelope, body)
        await self.send_raw(frame)
        self.bytes_sent += len(frame)
        return len(frame)

    async def send_raw(self, frame: bytes | bytearray | memoryview) -> None:
        """Put one websocket message on the wire as is (tests use it to send malformed frames), then wait
        until the socket's write buffer drains below its high-water mark."""
        listener = self._listener
        transport = listener.transport
        if listener.closed or transport is None or transport.is_close_frame_sent:
            raise self._closed_error(" while sending")
        transport.send(WSMsgType.BINARY, frame)
        await listener.writable()
        if listener.closed and not listener.close_reason:
            raise self._closed_error(" while sending")

    async def recv_raw(self, timeout: float) -> bytes:
        """The next websocket message as received, unvalidated (for tests and diagnostics)."""
        try:
            async with asyncio.timeout(timeout):
                item = await self._listener.next_frame()
        except TimeoutError:
            raise DeadlineExceeded(f"{self.peer}: no message within {timeout:g} s") from None
        if item is None:
            raise self._closed_error("")
        if item is TEXT:
            raise ProtocolError("text websocket message; fedmist frames are binary")
        assert isinstance(item, bytes)
        return item

    async def recv(self, timeout: float) -> tuple[Envelope, memoryview]:
        frame = await self.recv_raw(timeout)
        self.bytes_received += len(frame)
        return self._open(frame)

    async def recv_each(self, consume: FrameConsumer, timeout: float) -> None:
        """Like :meth:`Channel.recv_each`, with each frame decoded and consumed inside picows' callback, straight
        from its read buffer: a payload chunk is copied once, by ``consume``, into wherever it belongs."""
        def on_message(item: memoryview | object) -> bool:
            if item is TEXT:
                raise ProtocolError("text websocket message; fedmist frames are binary")
            frame = memoryview(item)  # type: ignore[arg-type]
            self.bytes_received += len(frame)
            envelope, body = self._open(frame)
            return consume(envelope, body)

        try:
            async with asyncio.timeout(timeout):
                finished = await self._listener.consume(on_message)
        except TimeoutError:
            raise DeadlineExceeded(f"{self.peer}: no further message within {timeout:g} s") from None
        if not finished:
            raise self._closed_error("")

    async def answers(self, timeout: float = PROBE_TIMEOUT_S) -> bool:
        """A websocket ping of ours answered by its pong within ``timeout`` s (``FrameListener.probe``)."""
        return await self._listener.probe(timeout)

    async def abort(self) -> None:
        transport = self._listener.transport
        if transport is None or self._listener.closed:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode.GOING_AWAY)
        transport.disconnect(graceful=False)

    async def close(self, code: WSCloseCode = WSCloseCode.OK) -> None:
        transport = self._listener.transport
        if transport is None or self._listener.closed:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(code)
        try:  # give the peer a moment to answer the close frame, then hang up regardless
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                while not self._listener.closed and not self._listener.close_reason:
                    if await self._listener.next_frame() is None:
                        break
        except TimeoutError:
            pass
        transport.disconnect()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await transport.wait_disconnected()
        except (TimeoutError, Exception):  # noqa: BLE001 - closing must not raise; the socket is aborted below
            transport.disconnect(graceful=False)


class Server:
    """A listening websocket server: its sockets, and closing it closes every open connection (1001)."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self.channels: set[WsChannel] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def sockets(self) -> tuple[Any, ...]:
        return tuple(self._server.sockets)

    def close(self) -> None:
        self._server.close()
        for channel in list(self.channels):
            transport = channel._listener.transport
            if transport is not None and not channel._listener.closed:
                if not transport.is_close_frame_sent:
                    transport.send_close(WSCloseCode.GOING_AWAY)
                transport.disconnect()

    async def wait_closed(self) -> None:
        """Wait (at most a few seconds) for the connection handlers to finish, then cancel any left."""
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=_CLOSE_TIMEOUT)
            for task in pending:
                task.cancel()
        await self._server.wait_closed()


async def serve(handler: Handler, host: str, port: int, limits: Limits | None = None,
                security: Security | None = None, reads: ReadSizing | None = None) -> Server:
    """Start a websocket (or, with a server TLS context, wss) server calling ``handler(channel)`` per connection.

    When the handler returns the connection is closed (1000); when it raises, the error is logged and the
    connection closed with 1011. ``reads`` bounds each connection's read memory for peers of small frames
    (``transport.read_sizing``); without it a connection reads up to ``_READ_BUFFER`` at once."""
    limits = limits or Limits()
    security = security or Security()
    loop = asyncio.get_running_loop()
    wrapper: Server

    async def _run(channel: WsChannel) -> None:
        try:
            await handler(channel)
            await channel.close()
        except Exception:  # noqa: BLE001 - one connection's failure must not stop the server
            log.exception("connection handler for %s failed", channel.peer)
            await channel.close(WSCloseCode.INTERNAL_ERROR)
        finally:
            wrapper.channels.discard(channel)

    def _on_connected(listener: FrameListener) -> None:
        transport = listener.transport
        assert transport is not None
        peername = transport.underlying_transport.get_extra_info("peername") or ("?", 0)
        channel = WsChannel(listener, f"{peername[0]}:{peername[1]}", limits)
        wrapper.channels.add(channel)
        task = loop.create_task(_run(channel))
        wrapper.tasks.add(task)
        task.add_done_callback(wrapper.tasks.discard)

    def _ws_protocol() -> asyncio.BufferedProtocol:
        protocol = WSProtocol(None, None, False, lambda _request: FrameListener(_MAX_QUEUE, _on_connected),
                              _picows_logger(), True, 10.0,
                              _PING["enable_auto_ping"], _PING["auto_ping_idle_timeout"],
                              _PING["auto_ping_reply_timeout"], WSAutoPingStrategy.PING_WHEN_IDLE,
                              _PING["enable_auto_pong"], limits.max_frame_bytes, None,
                              reads.initial if reads else _READ_BUFFER)
        return CappedReads(protocol, reads.per_read) if reads else protocol

    server_ssl = security.server_ssl
    factory: Callable[[], asyncio.BaseProtocol] = (
        (lambda: TlsFirst(server_ssl, _ws_protocol, 10.0)) if server_ssl is not None else _ws_protocol)
    wrapper = Server(await loop.create_server(factory, host, port))
    return wrapper


async def connect(url: str, limits: Limits | None = None, timeout: float = 10.0,
                  security: Security | None = None) -> WsChannel:
    """Open a channel to the aggregator at ``url`` (``ws://`` or ``wss://host:port``) within ``timeout`` s.

    With a client TLS context the server's certificate is verified against the job CA; with a token the
    handshake (``transport.handshake``) then authenticates both sides and keys the session, within another
    ``timeout`` s. The server's side of the handshake is the handler's to run (after its connection gate)."""
    limits = limits or Limits()
    security = security or Security()
    if security.token and not (security.job and security.worker):
        raise ValueError("a client holding a token needs its job and worker name (Security.job, Security.worker)")
    secure = url.startswith("wss://")
    try:
        async with asyncio.timeout(timeout):
            _, listener = await ws_connect(
                lambda: FrameListener(_MAX_QUEUE), url,
                ssl_context=security.client_ssl if secure else None,
                websocket_handshake_timeout=timeout, max_frame_size=limits.max_frame_bytes,
                read_buffer_init_size=_READ_BUFFER, max_redirects=0, use_aiofastnet=False,
                logger_name=_picows_logger(), **_PING)
    except ssl.SSLCertVerificationError as exc:
        hint = _VERIFY_HINTS.get(exc.verify_code, "")
        raise AuthenticationError(f"cannot verify the server at {url}: certificate verify failed: "
                                  f"{exc.verify_message or exc}{f' ({hint})' if hint else ''}") from None
    except (OSError, TimeoutError, WSError, ValueError) as exc:
        raise TransportError(f"cannot connect to {url}: {_one_line(exc)}") from None
    if not isinstance(listener, FrameListener):  # picows returns no listener when the peer hung up mid-handshake
        raise TransportError(f"cannot connect to {url}: the server closed the connection during the websocket "
                             "handshake")
    channel = WsChannel(listener, url, limits)
    if security.token:
        try:
            await handshake.offer(channel, security.token, security.job, security.worker, security.role, timeout)
        except BaseException:
            await channel.abort()
            raise
    return channel


def _picows_logger() -> logging.Logger:
    """picows' logger for fedmist's connections, quiet below WARNING (its per-connection INFO lines are noise)."""
    logger = logging.getLogger(_PICOWS_LOG)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return logger


def _one_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return text or type(exc).__name__
