"""The one message envelope every fedmist peer speaks (DESIGN section 6).

A frame is ``4-byte big-endian header length | JSON header | [32-byte MAC] | binary body``. The header is
small and self-describing; the body is raw bytes (safetensors, packed bits, little-endian arrays) whose size
and BLAKE3 digest the header declares, so a receiver can check a chunk before it touches its disk or its model.
When the peers share a session key, the MAC (HMAC-SHA256 over the frame's sequence number, the length prefix
and the header, which carries the body's digest) follows the header, so a relay can alter neither header nor
body unnoticed. The sequence number is implicit -- the count of frames this direction of the session carried
before, never sent: a websocket over TCP delivers frames in order, so a frame replayed, dropped, reordered or
spliced in from another session fails its MAC (protocol version 3; the keys come from the handshake in
``fedmist.transport.handshake`` and differ per session and per direction).
Nothing here ever unpickles anything: JSON and bytes only.

Why BLAKE3 for the body and not SHA-256 (protocol version 2; version 1 carried ``sha256``): every payload byte
is hashed once by the sender and once by the receiver, and on the 2-core machines fedmist targets that was the
largest single cost of moving a model -- SHA-256 runs at about 1.4 GB/s here, BLAKE3 (also a 256-bit
cryptographic hash, so the MAC'd header still pins the body) at about 5 GB/s on one core (BENCHMARKS.md,
transport throughput). S3 objects keep SHA-256: that is the checksum S3 itself verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from blake3 import blake3

from fedmist.spec.naming import DNS_LABEL_MAX, is_dns_label

PROTOCOL_VERSION = 3
_LEN = struct.Struct(">I")
_SEQ = struct.Struct(">Q")
MAC_BYTES = 32

#: What a frame failing its MAC means, in every refusal that reports one.
MAC_MISMATCH_CAUSE = "altered, replayed or reordered in transit, or sent in another session"

#: Payload kinds a body may carry. "none" means an empty body.
PAYLOAD_KINDS = frozenset({"none", "json", "safetensors", "records", "raw"})


class ProtocolError(Exception):
    """An inbound frame broke the protocol. The message is one line fit for a log and an error reply."""


class MacMismatch(ProtocolError):
    """A frame's MAC did not verify. ``claimed`` is its header as sent -- unauthenticated, so it may only
    be used to explain the refusal (which message and worker it claims to be)."""

    def __init__(self, message: str, claimed: dict[str, Any]) -> None:
        super().__init__(message)
        self.claimed = claimed


@dataclass(frozen=True)
class Limits:
    """Bounds on what a peer may send, so a hostile or broken peer cannot exhaust memory."""

    max_header_bytes: int = 64 * 1024
    max_chunk_bytes: int = 4 * 1024 * 1024
    max_payload_bytes: int = 8 * 1024**3
    max_meta_items: int = 64

    @property
    def max_frame_bytes(self) -> int:
        """Largest frame a transport should accept (header + one chunk)."""
        return _LEN.size + self.max_header_bytes + self.max_chunk_bytes


@dataclass(frozen=True)
class Envelope:
    """The decoded header of one frame.

    ``size`` is the size of the whole payload this frame belongs to; ``offset`` is where this frame's body
    starts in it (0 for single-frame payloads); ``blake3`` is the hex BLAKE3-256 digest of *this frame's
    body*, so every chunk is checked on arrival and a resumed upload never re-verifies what is already stored.
    """

    type: str
    job: str
    worker: str
    round: int = 0
    seq: int = 0
    kind: str = "none"
    size: int = 0
    offset: int = 0
    blake3: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    v: int = PROTOCOL_VERSION


_FIELD_TYPES: dict[str, type] = {
    "v": int,
    "type": str,
    "job": str,
    "worker": str,
    "round": int,
    "seq": int,
    "kind": str,
    "size": int,
    "offset": int,
    "blake3": str,
    "meta": dict,
}
_REQUIRED = ("v", "type", "job", "worker")
_MAX_NAME = 253


def body_digest(data: bytes | bytearray | memoryview) -> str:
    """Hex BLAKE3-256 of a frame body (one core: the transport already runs one process per side)."""
    return blake3(data).hexdigest()


def frame_mac(mac_key: bytes, prefix_and_header: bytes | memoryview, seq: int = 0) -> bytes:
    """The frame's authentication tag: HMAC-SHA256 of its 8-byte sequence number, the length prefix and the
    JSON header (the header carries the body's digest, so the tag covers the body too)."""
    mac = hmac.new(mac_key, _SEQ.pack(seq), hashlib.sha256)
    mac.update(prefix_and_header)
    return mac.digest()


def encode(envelope: Envelope, body: bytes | bytearray | memoryview = b"", mac_key: bytes | None = None,
           seq: int = 0) -> bytes:
    """Serialise one frame. ``size``/``blake3`` are filled in for single-frame payloads when left unset;
    with ``mac_key`` the frame carries a MAC for position ``seq`` of its direction (the receiver must hold the
    same key and expect the same position)."""
    header = {name: getattr(envelope, name) for name in _FIELD_TYPES}
    if body and not envelope.blake3:
        header["blake3"] = body_digest(body)
    if body and envelope.size == 0:
        header["size"] = len(body)
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    head = _LEN.pack(len(raw)) + raw
    return b"".join((head, frame_mac(mac_key, head, seq) if mac_key else b"", body))  # one copy of the body


def decode(frame: bytes | bytearray | memoryview, limits: Limits | None = None,
           mac_key: bytes | None = None, seq: int = 0) -> tuple[Envelope, memoryview]:
    """Parse and validate one frame; raise :class:`ProtocolError` on anything malformed.

    Validation covers framing, header size, the MAC (checked before the header is even parsed), JSON
    shape, field types, payload bounds and the body hash, so callers only ever see well-formed envelopes.
    """
    limits = limits or Limits()
    view = memoryview(frame).cast("B") if not isinstance(frame, memoryview) else frame.cast("B")
    if len(view) < _LEN.size:
        raise ProtocolError(f"frame too short ({len(view)} bytes)")
    (header_len,) = _LEN.unpack_from(view, 0)
    if header_len == 0 or header_len > limits.max_header_bytes:
        raise ProtocolError(f"header length {header_len} outside 1..{limits.max_header_bytes}")
    head_end = _LEN.size + header_len
    tag_bytes = MAC_BYTES if mac_key else 0
    if head_end + tag_bytes > len(view):
        raise ProtocolError(f"header length {header_len} exceeds frame of {len(view)} bytes")
    if mac_key and not hmac.compare_digest(bytes(view[head_end:head_end + MAC_BYTES]),
                                           frame_mac(mac_key, view[:head_end], seq)):
        claimed = _unverified_header(view[_LEN.size:head_end])
        who = f" ('{str(claimed.get('type', '?'))[:40]}' claiming worker {str(claimed.get('worker', '?'))[:80]!r})"
        raise MacMismatch(f"frame MAC mismatch{who}: {MAC_MISMATCH_CAUSE}", claimed)
    try:
        header = json.loads(bytes(view[_LEN.size : _LEN.size + header_len]), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"header is not valid JSON: {_short(exc)}") from None
    envelope = _validate_header(header, limits)
    body = view[head_end + tag_bytes :]
    _validate_body(envelope, body, limits)
    return envelope, body


def _unverified_header(raw: memoryview) -> dict[str, Any]:
    """The header of a frame that failed its MAC, parsed only to name it in the refusal ({} if unparsable)."""
    try:
        header = json.loads(bytes(raw), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return header if isinstance(header, dict) else {}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} not allowed")


def _validate_header(header: Any, limits: Limits) -> Envelope:
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    version = header.get("v")
    if isinstance(version, int) and not isinstance(version, bool) and version != PROTOCOL_VERSION:
        # first, so a peer of another release hears why (its fields may differ: v1 had 'sha256')
        raise ProtocolError(f"protocol version {version} not supported (this peer speaks {PROTOCOL_VERSION})")
    unknown = set(header) - set(_FIELD_TYPES)
    if unknown:
        raise ProtocolError(f"unknown header fields {sorted(unknown)[:5]}")
    for name in _REQUIRED:
        if name not in header:
            raise ProtocolError(f"header field '{name}' missing")
    for name, value in header.items():
        expected = _FIELD_TYPES[name]
        if expected is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise ProtocolError(f"header field '{name}' must be an integer")
        if expected is not int and not isinstance(value, expected):
            raise ProtocolError(f"header field '{name}' must be {expected.__name__}")
    for name in ("type", "job", "worker"):
        if not 0 < len(header[name]) <= _MAX_NAME:
            raise ProtocolError(f"header field '{name}' must be 1..{_MAX_NAME} characters")
    if not is_dns_label(header["worker"]):
        # a worker name keys the aggregator's store folder, status entry and S3 prefix: only a DNS label may
        raise ProtocolError(f"header field 'worker' {header['worker'][:80]!r} is not a DNS-1123 label "
                            f"([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most {DNS_LABEL_MAX} characters)")
    for name in ("round", "seq", "size", "offset"):
        if header.get(name, 0) < 0:
            raise ProtocolError(f"header field '{name}' must not be negative")
    kind = header.get("kind", "none")
    if kind not in PAYLOAD_KINDS:
        raise ProtocolError(f"payload kind '{kind}' unknown")
    if header.get("size", 0) > limits.max_payload_bytes:
        raise ProtocolError(f"payload size {header['size']} exceeds limit {limits.max_payload_bytes}")
    digest = header.get("blake3", "")
    if digest and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise ProtocolError("header field 'blake3' must be 64 lowercase hex digits")
    meta = header.get("meta", {})
    if len(meta) > limits.max_meta_items:
        raise ProtocolError(f"meta has {len(meta)} items, limit {limits.max_meta_items}")
    _check_finite(meta)
    return Envelope(**header)


def _check_finite(value: Any, depth: int = 0) -> None:
    if depth > 8:
        raise ProtocolError("meta nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError("meta holds a non-finite number")
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_finite(item, depth + 1)


def _validate_body(envelope: Envelope, body: memoryview, limits: Limits) -> None:
    if len(body) > limits.max_chunk_bytes:
        raise ProtocolError(f"chunk of {len(body)} bytes exceeds limit {limits.max_chunk_bytes}")
    if envelope.kind == "none":
        if len(body):
            raise ProtocolError("payload kind 'none' with a non-empty body")
        return
    if envelope.offset + len(body) > envelope.size:
        raise ProtocolError(f"chunk [{envelope.offset}, {envelope.offset + len(body)}) beyond payload size {envelope.size}")
    if len(body) and not envelope.blake3:
        raise ProtocolError("body without blake3 digest")
    if len(body) and body_digest(body) != envelope.blake3:
        raise ProtocolError("body blake3 mismatch")


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
