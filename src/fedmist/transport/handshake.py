"""Admission by challenge-response: the job token never crosses the wire, and every session gets its own keys.

Why: the token used to travel in the trainer's HELLO and the frame MAC key derived from the token alone, so
whoever saw one HELLO on a plain-ws channel could forge every frame of every session and join the job. Now
the first three frames of a connection (JSON, no body, no MAC) are::

    aggregator -> trainer   challenge  {nonce: Ns}
    trainer -> aggregator   auth       {role, nonce: Nc, proof: HMAC(K, "trainer proof" | T)}
    aggregator -> trainer   welcome    {proof: HMAC(K, "aggregator proof" | T)}

``K`` is HMAC-SHA256 of a purpose label under the token, ``T`` the transcript (protocol version, job, worker,
role, Ns, Nc). The aggregator's fresh ``Ns`` makes a recorded ``auth`` worthless in a new session; the
trainer's ``Nc`` makes a recorded ``welcome`` worthless, so a trainer never talks to an impostor aggregator.
Both sides then MAC every frame with a key of their direction, ``HMAC(K, "frames <direction>" | T)``, and an
implicit frame counter (``wire.envelope``): an observer learns nonces and tags only, which neither reveal the
token nor let it forge, replay or splice a frame. What plain ws does not give is confidentiality: the bits,
labels and weights are readable on the wire (README, Security).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from fedmist.transport.base import AuthenticationError, DeadlineExceeded
from fedmist.wire.envelope import PROTOCOL_VERSION, Envelope, ProtocolError
from fedmist.wire.messages import validate_meta

if TYPE_CHECKING:
    from fedmist.transport.base import Channel

CHALLENGE = "challenge"  # aggregator -> trainer: its nonce
AUTH = "auth"            # trainer -> aggregator: its role and nonce, and the proof that it holds the token
WELCOME = "welcome"      # aggregator -> trainer: the proof that the aggregator holds it too
ERROR = "error"          # the aggregator's refusal (same type as wire.messages.ERROR)
AGGREGATOR = "aggregator"

_NONCE_BYTES = 32
_HEX64 = r"^[0-9a-f]{64}$"


class _Meta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChallengeMeta(_Meta):
    nonce: str = Field(pattern=_HEX64)


class AuthMeta(_Meta):
    role: Literal["trainer"]
    nonce: str = Field(pattern=_HEX64)
    proof: str = Field(pattern=_HEX64)


class WelcomeMeta(_Meta):
    proof: str = Field(pattern=_HEX64)


class _ErrorMeta(_Meta):
    reason: str = Field(max_length=2000)


def handshake_key(token: str) -> bytes:
    """The key the handshake proves possession of; the token itself keys nothing else."""
    return hmac.new(token.encode(), b"fedmist handshake key v3", hashlib.sha256).digest()


def transcript(job: str, worker: str, role: str, server_nonce: str, client_nonce: str) -> bytes:
    """What both proofs and both frame keys are bound to (JSON: unambiguous for any names)."""
    return json.dumps(["fedmist-handshake", PROTOCOL_VERSION, job, worker, role, server_nonce, client_nonce],
                      separators=(",", ":")).encode()


def _tag(key: bytes, label: bytes, data: bytes) -> bytes:
    return hmac.new(key, label + b"\x00" + data, hashlib.sha256).digest()


def proofs(key: bytes, script: bytes) -> tuple[str, str]:
    """(the trainer's proof, the aggregator's proof): distinct labels, so neither answers for the other."""
    return _tag(key, b"trainer proof", script).hex(), _tag(key, b"aggregator proof", script).hex()


def session_keys(key: bytes, script: bytes) -> tuple[bytes, bytes]:
    """(trainer -> aggregator frame key, aggregator -> trainer frame key) of one session."""
    return _tag(key, b"frames trainer->aggregator", script), _tag(key, b"frames aggregator->trainer", script)


def _parse(envelope: Envelope, schema: type[_Meta]) -> _Meta:
    if envelope.kind != "none":
        raise ProtocolError(f"handshake message '{envelope.type}' must not carry a body")
    return validate_meta(envelope, schema)


async def _recv(channel: "Channel", deadline: float, timeout: float) -> Envelope:
    """The next handshake frame, before the handshake's deadline (one deadline for all its steps)."""
    late = DeadlineExceeded(f"{channel.peer}: handshake not finished within {timeout:g} s")
    left = deadline - time.monotonic()
    if left <= 0:
        raise late
    try:
        envelope, _ = await channel.recv(left)
    except DeadlineExceeded:
        raise late from None
    return envelope


async def accept(channel: "Channel", token: str, job: str, timeout: float) -> str:
    """The aggregator's side, on a new connection: challenge, check the proof, prove back, key the session.
    Returns the authenticated worker name. All within ``timeout`` s; a refusal is a one-line ProtocolError
    (the caller logs it and replies), a wrong proof reads ``worker 'NAME' presented a wrong token``."""
    deadline = time.monotonic() + timeout
    server_nonce = secrets.token_bytes(_NONCE_BYTES).hex()
    await channel.send(Envelope(type=CHALLENGE, job=job, worker=AGGREGATOR, meta={"nonce": server_nonce}))
    envelope = await _recv(channel, deadline, timeout)
    if envelope.type != AUTH:
        raise ProtocolError(f"expected the handshake's '{AUTH}', got '{envelope.type[:40]}'")
    auth = _parse(envelope, AuthMeta)
    assert isinstance(auth, AuthMeta)
    if envelope.job != job:
        raise ProtocolError(f"worker '{envelope.worker}' belongs to job '{envelope.job}', not '{job}'")
    key = handshake_key(token)
    script = transcript(job, envelope.worker, auth.role, server_nonce, auth.nonce)
    theirs, ours = proofs(key, script)
    if not hmac.compare_digest(auth.proof, theirs):
        # a wrong token, or a recorded 'auth' replayed against a new challenge: both hold no valid proof
        raise ProtocolError(f"worker '{envelope.worker}' presented a wrong token")
    await channel.send(Envelope(type=WELCOME, job=job, worker=AGGREGATOR, meta={"proof": ours}))
    to_server, to_client = session_keys(key, script)
    channel.begin_session(send_key=to_client, recv_key=to_server)
    return envelope.worker


async def offer(channel: "Channel", token: str, job: str, worker: str, role: str, timeout: float) -> None:
    """The trainer's side, right after the websocket opens: answer the challenge, check the aggregator's
    proof, key the session. Any failure is an :class:`AuthenticationError` (retrying cannot help): the
    aggregator's refusal (``the aggregator refused this worker: worker 'NAME' presented a wrong token``), an
    aggregator that cannot prove it holds the token, or one that does not speak this handshake."""
    deadline = time.monotonic() + timeout
    try:
        envelope = await _recv(channel, deadline, timeout)
        challenge = _expect(channel, envelope, CHALLENGE, ChallengeMeta)
        assert isinstance(challenge, ChallengeMeta)
        client_nonce = secrets.token_bytes(_NONCE_BYTES).hex()
        key = handshake_key(token)
        script = transcript(job, worker, role, challenge.nonce, client_nonce)
        ours, theirs = proofs(key, script)
        await channel.send(Envelope(type=AUTH, job=job, worker=worker,
                                    meta={"role": role, "nonce": client_nonce, "proof": ours}))
        envelope = await _recv(channel, deadline, timeout)
        welcome = _expect(channel, envelope, WELCOME, WelcomeMeta)
        assert isinstance(welcome, WelcomeMeta)
    except ProtocolError as exc:
        raise AuthenticationError(f"{channel.peer}: handshake failed: {exc}") from None
    if not hmac.compare_digest(welcome.proof, theirs):
        raise AuthenticationError(f"{channel.peer}: the aggregator did not prove that it holds the job token "
                                  "(it holds another token, or it is not this job's aggregator)")
    to_server, to_client = session_keys(key, script)
    channel.begin_session(send_key=to_server, recv_key=to_client)


def _expect(channel: "Channel", envelope: Envelope, kind: str, schema: type[_Meta]) -> _Meta:
    if envelope.type == ERROR:
        reason = _parse(envelope, _ErrorMeta)
        assert isinstance(reason, _ErrorMeta)
        raise AuthenticationError(f"{channel.peer}: the aggregator refused this worker: "
                                  f"{' '.join(reason.reason.split())[:300]}")
    if envelope.type != kind:
        raise ProtocolError(f"expected the handshake's '{kind}', got '{envelope.type[:40]}'")
    return _parse(envelope, schema)
