"""The small interface every transmitter implements: send and receive validated frames with deadlines."""

from __future__ import annotations

import abc

from fedmist.wire.envelope import Envelope


class TransportError(Exception):
    """The peer went away, a deadline passed, or the connection could not be made. One line, names the peer."""


class Channel(abc.ABC):
    """One authenticated, ordered, message-oriented connection to a peer."""

    peer: str
    bytes_sent: int = 0      # frame bytes this side put on the wire (status reports them per worker)
    bytes_received: int = 0  # frame bytes received and accepted by the decoder

    @abc.abstractmethod
    async def send(self, envelope: Envelope, body: bytes | bytearray | memoryview = b"") -> int:
        """Send one frame; return the bytes put on the wire."""

    @abc.abstractmethod
    async def recv(self, timeout: float) -> tuple[Envelope, memoryview]:
        """Receive and validate one frame, waiting at most ``timeout`` seconds."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection (idempotent)."""


class AuthenticationError(TransportError):
    """The peer could not be authenticated (certificate, token): retrying will not help."""
