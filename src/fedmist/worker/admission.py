"""How an aggregator lets a connection in, the same for the MistNet upload server and the FedAvg round server:
the connection gate first (before a frame is read), then the handshake (the peer proves it holds the job token
without sending it, ``transport.handshake``) and the HELLO, then the rule for a name that is already connected.
Refusals are an ERROR reply the peer can read, never an exception that escapes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fedmist.transport import handshake
from fedmist.transport.base import Channel, DeadlineExceeded, TransportError
from fedmist.transport.gate import ConnectionGate
from fedmist.wire import messages as msg
from fedmist.wire.envelope import Envelope, ProtocolError

log = logging.getLogger("fedmist.aggregator")


async def reply_error(channel: Channel, job: str, reason: str) -> None:
    """Tell the peer why it is refused (best effort: it may already be gone)."""
    try:
        await channel.send(Envelope(type=msg.ERROR, job=job or "?", worker="aggregator", meta={"reason": reason[:2000]}))
    except (TransportError, ProtocolError, ValueError):
        pass


async def refused_at_gate(gate: ConnectionGate, channel: Channel, job: str) -> bool:
    """True when the gate turns ``channel`` away (logged, told why and closed); else it counts as open."""
    refusal = gate.admit(channel.peer.rsplit(":", 1)[0])
    if refusal is None:
        return False
    log.warning("refused %s: %s", channel.peer, refusal)
    await reply_error(channel, job, refusal)
    await channel.close()
    return True


async def receive_hello(channel: Channel, token: str, job: str, timeout: float) -> tuple[Envelope, msg.HelloMeta]:
    """The handshake (when the job has a token) and then the HELLO, both within ``timeout`` s. The HELLO must
    name the job and the worker the handshake authenticated (it is MAC'd with that session's key)."""
    deadline = time.monotonic() + timeout
    worker = await handshake.accept(channel, token, job, timeout) if token else None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(f"{channel.peer}: no HELLO within {timeout:g} s")
    envelope, _ = await channel.recv(left)
    hello = msg.parse_meta(envelope, msg.HELLO)
    if envelope.job != job:
        raise ProtocolError(f"worker '{envelope.worker}' belongs to job '{envelope.job}', not '{job}'")
    if worker is not None and envelope.worker != worker:
        raise ProtocolError(f"HELLO names worker '{envelope.worker}', but the handshake authenticated '{worker}'")
    return envelope, hello


async def refuse_if_live(name: str, old: Channel, still_current: Callable[[], bool]) -> None:
    """Refuse a second connection claiming ``name`` while its connection ``old`` still answers a probe (two
    workers given one name, or someone else holding the token). One whose old connection no longer answers
    (half-open after a network fault) may replace it, so a reconnect is never locked out. ``still_current``
    says whether ``old`` is still that worker's session once the probe is done."""
    if await old.answers() and still_current():
        raise ProtocolError(f"worker '{name}' is already connected (from {old.peer}, which still answers)")
