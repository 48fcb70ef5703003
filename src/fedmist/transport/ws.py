"""Websocket transmitter (the default): binary websocket messages, one fedmist frame each.

Compression is off (packed bits and float weights do not compress) and the websocket message size limit is
the frame limit, so an oversized frame is refused by the library before it is buffered whole.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import connect as _ws_connect
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as _ws_serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, WebSocketException

from fedmist.transport.base import AuthenticationError, Channel, TransportError
from fedmist.transport.security import Security
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

#: Frames at least this large are encoded/decoded in a worker thread. Why: SHA-256 (and the HMAC) release the
#: GIL on large buffers, so hashing one chunk overlaps with the event loop framing, masking and copying the
#: next one -- the hash is a quarter of the receive path's CPU. Small control frames stay inline.
OFFLOAD_BYTES = 256 * 1024


class WsChannel(Channel):
    """A :class:`Channel` over one websocket connection."""

    def __init__(self, connection, peer: str, limits: Limits, mac_key: bytes | None = None) -> None:
        self._conn = connection
        self.peer = peer
        self.limits = limits
        self._mac_key = mac_key
        self.bytes_sent = 0
        self.bytes_received = 0

    async def send(self, envelope: Envelope, body: bytes | bytearray | memoryview = b"") -> int:
        if len(body) >= OFFLOAD_BYTES:
            frame = await asyncio.to_thread(encode, envelope, body, self._mac_key)
        else:
            frame = encode(envelope, body, self._mac_key)
        try:
            await self._conn.send(frame)
        except ConnectionClosed as exc:
            raise TransportError(f"{self.peer}: connection closed while sending ({exc.rcvd or 'no close frame'})") from None
        self.bytes_sent += len(frame)
        return len(frame)

    async def recv(self, timeout: float) -> tuple[Envelope, memoryview]:
        try:
            async with asyncio.timeout(timeout):
                frame = await self._conn.recv(decode=False)
        except TimeoutError:
            raise TransportError(f"{self.peer}: no message within {timeout:g} s") from None
        except ConnectionClosed as exc:
            raise TransportError(f"{self.peer}: connection closed ({exc.rcvd or 'no close frame'})") from None
        if isinstance(frame, str):
            raise ProtocolError("text websocket message; fedmist frames are binary")
        self.bytes_received += len(frame)
        if len(frame) >= OFFLOAD_BYTES:
            return await asyncio.to_thread(decode, frame, self.limits, self._mac_key)
        return decode(frame, self.limits, self._mac_key)

    async def close(self) -> None:
        await self._conn.close()


async def serve(handler: Handler, host: str, port: int, limits: Limits | None = None,
                security: Security | None = None) -> Server:
    """Start a websocket (or, with a server TLS context, wss) server calling ``handler(channel)`` per connection."""
    limits = limits or Limits()
    security = security or Security()

    async def _on_connection(conn: ServerConnection) -> None:
        host_port = conn.remote_address[:2] if conn.remote_address else ("?", 0)
        channel = WsChannel(conn, f"{host_port[0]}:{host_port[1]}", limits, security.mac_key)
        await handler(channel)

    return await _ws_serve(
        _on_connection,
        host,
        port,
        compression=None,
        max_size=limits.max_frame_bytes,
        max_queue=4,
        open_timeout=10,
        ping_interval=20,
        ping_timeout=60,
        close_timeout=5,
        ssl=security.server_ssl,
    )


async def connect(url: str, limits: Limits | None = None, timeout: float = 10.0,
                  security: Security | None = None) -> WsChannel:
    """Open a channel to the aggregator at ``url`` (``ws://`` or ``wss://host:port``) within ``timeout`` s.

    With a client TLS context the server's certificate is verified against the job CA."""
    limits = limits or Limits()
    security = security or Security()
    extra = {"ssl": security.client_ssl} if url.startswith("wss://") else {}
    try:
        conn = await _ws_connect(
            url,
            compression=None,
            max_size=limits.max_frame_bytes,
            max_queue=4,
            open_timeout=timeout,
            ping_interval=20,
            ping_timeout=60,
            close_timeout=5,
            proxy=None,
            **extra,
        )
    except ssl.SSLCertVerificationError as exc:
        hint = _VERIFY_HINTS.get(exc.verify_code, "")
        raise AuthenticationError(f"cannot verify the server at {url}: certificate verify failed: "
                                  f"{exc.verify_message or exc}{f' ({hint})' if hint else ''}") from None
    except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
        raise TransportError(f"cannot connect to {url}: {str(exc) or type(exc).__name__}") from None
    return WsChannel(conn, url, limits, security.mac_key)
