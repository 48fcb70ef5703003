"""The small interface every transmitter implements: send and receive validated frames with deadlines."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable

from fedmist.wire.envelope import Envelope

#: How long a server waits for an old connection to answer a probe before a reconnect may replace it.
PROBE_TIMEOUT_S = 3.0

#: Takes one validated frame; ``body`` is valid only during the call (copy what you keep). True: no more, please.
FrameConsumer = Callable[[Envelope, memoryview], bool]


class TransportError(Exception):
    """The peer went away, a deadline passed, or the connection could not be made. One line, names the peer."""


class DeadlineExceeded(TransportError):
    """No (further) message arrived before the wait's deadline."""


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

    async def recv_each(self, consume: FrameConsumer, timeout: float) -> None:
        """Receive and validate frames, handing each to ``consume`` until it returns True; at most ``timeout``
        seconds in all (then :class:`DeadlineExceeded`). What ``consume`` raises is raised here.

        Why a callback and not a loop over :meth:`recv`: a channel may then hand each body over from its own
        read buffer without first copying it out (the ws channel does); this default simply loops.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(f"{self.peer}: no further message within {timeout:g} s")
            envelope, body = await self.recv(remaining)
            if consume(envelope, body):
                return

    async def answers(self, timeout: float = PROBE_TIMEOUT_S) -> bool:
        """Whether the peer is demonstrably there: it answered a liveness probe within ``timeout`` seconds.

        Why: a server must tell a second connection claiming a live worker's name (refused) from a worker
        reconnecting while its old connection is half-open after a fault (which it replaces). A channel that
        cannot probe says False, so it never blocks a reconnect."""
        return False

    def begin_session(self, send_key: bytes, recv_key: bytes) -> None:
        """From now on MAC every frame sent with ``send_key`` and require ``recv_key`` on every frame received,
        each with its direction's frame counter from 0 (``transport.handshake`` calls this once it has
        authenticated the peer). A channel that cannot carry an authenticated session refuses."""
        raise TransportError(f"{self.peer}: this channel cannot carry an authenticated session")

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection (idempotent)."""

    async def abort(self) -> None:
        """Drop a connection whose peer no longer answers, without waiting for its close handshake."""
        await self.close()


class AuthenticationError(TransportError):
    """The peer could not be authenticated (certificate, token): retrying will not help."""


async def recv_each_idle(channel: Channel, consume: FrameConsumer, idle_timeout: float) -> None:
    """Like :meth:`Channel.recv_each`, but the deadline is per frame: :class:`DeadlineExceeded` once
    ``idle_timeout`` seconds pass without one. Why: a MistNet edge's upload interleaves its own extraction, so
    no total bound fits it, while a silent peer must still be noticed; and ``recv_each`` (not a loop over
    ``recv``) lets the ws channel hand each body over from its read buffer, so 100 uploading edges do not also
    hold a queue of copied frames each."""
    last = time.monotonic()

    def counted(envelope: Envelope, body: memoryview) -> bool:
        nonlocal last
        last = time.monotonic()
        return consume(envelope, body)

    while True:
        try:
            await channel.recv_each(counted, max(0.0, last + idle_timeout - time.monotonic()))
            return
        except DeadlineExceeded:
            if time.monotonic() - last >= idle_timeout:
                raise DeadlineExceeded(f"{channel.peer}: no message within {idle_timeout:g} s") from None
