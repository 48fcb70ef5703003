"""How an aggregator lets a connection in, the same for the MistNet upload server and the FedAvg round server:
the connection gate first (before a frame is read), then the HELLO's token and job, then the rule for a name
that is already connected. Refusals are an ERROR reply the peer can read, never an exception that escapes."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from fedmist.transport.base import Channel, TransportError
from fedmist.transport.gate import ConnectionGate
from fedmist.wire.envelope import Envelope, ProtocolError
from fedmist.worker import protocol as msg

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


def check_hello(envelope: Envelope, presented: str, token: str, job: str) -> None:
    """A verified HELLO's claims: the token it presents (compared in constant time) and the job it names."""
    if token and not hmac.compare_digest(presented.encode(), token.encode()):
        raise ProtocolError(f"worker '{envelope.worker}' presented a wrong token")
    if envelope.job != job:
        raise ProtocolError(f"worker '{envelope.worker}' belongs to job '{envelope.job}', not '{job}'")


async def refuse_if_live(name: str, old: Channel, still_current: Callable[[], bool]) -> None:
    """Refuse a second connection claiming ``name`` while its connection ``old`` still answers a probe (two
    workers given one name, or someone else holding the token). One whose old connection no longer answers
    (half-open after a network fault) may replace it, so a reconnect is never locked out. ``still_current``
    says whether ``old`` is still that worker's session once the probe is done."""
    if await old.answers() and still_current():
        raise ProtocolError(f"worker '{name}' is already connected (from {old.peer}, which still answers)")
