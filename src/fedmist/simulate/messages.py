"""The simulation pool's frames: ``4-byte big-endian header length | JSON header | body`` -- no pickle.

Why not multiprocessing's own objects: they travel as pickles, and fedmist moves no pickle anywhere (DESIGN
section 6). A frame here carries a small JSON header (type, round, client, config, counts) and raw bytes (a
client's int32 row indices, or safetensors weights), over a pipe to a local worker or as plain ``bytes``
arguments to a Ray actor.
"""

from __future__ import annotations

import json
import struct
from typing import Any

MAX_HEADER_BYTES = 1 << 20
TYPES = frozenset({"global", "fit", "result", "error", "stop", "ready"})


class PoolProtocolError(ValueError):
    """A frame from a pool worker that does not parse: a bug or a crashed worker, never silently ignored."""


def pack(header: dict[str, Any], body: bytes | bytearray | memoryview = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((struct.pack(">I", len(raw)), raw, bytes(body)))


def unpack(frame: bytes | bytearray | memoryview) -> tuple[dict[str, Any], memoryview]:
    """``(header, body)``; the header's ``type`` must be known and its length bounded."""
    view = memoryview(frame)
    if len(view) < 4:
        raise PoolProtocolError(f"frame of {len(view)} bytes has no header length")
    (size,) = struct.unpack(">I", view[:4])
    if size > MAX_HEADER_BYTES or 4 + size > len(view):
        raise PoolProtocolError(f"frame header of {size} bytes does not fit the frame ({len(view)} bytes)")
    try:
        header = json.loads(bytes(view[4:4 + size]))
    except ValueError as exc:
        raise PoolProtocolError(f"frame header is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("type") not in TYPES:
        raise PoolProtocolError(f"frame header {str(header)[:80]!r} has no known type")
    return header, view[4 + size:]
