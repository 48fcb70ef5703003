"""Per-connection read memory for a server of many small-frame peers (the MistNet aggregator's 100 edges).

Why: picows gives every connection its own read buffer (``ws._READ_BUFFER``, 2 MiB, sized so one read takes a
whole 1 MiB model chunk) and doubles it whenever one read of the socket leaves it more than 90% full -- whatever
the frames' size, so a fast peer on loopback grows it further. Pages of that buffer stay resident for the
connection's life: an aggregator with 100 edges uploading at once held about 2 MiB per edge (BENCHMARKS.md,
MistNet at population scale). A MistNet edge's frames are at most 64 KiB of records and a header, so a buffer
that holds one such frame and one read is enough to stream at full speed.

:class:`CappedReads` sits between asyncio's transport and picows' protocol and hands the socket at most
``per_read`` bytes of picows' buffer per read. picows then never sees a read that fills its buffer unless the
frame in progress needs more room than ``initial`` (a larger frame still arrives: the buffer grows for it, up to
the frame limit, as before), so each connection's read memory stays near ``initial`` instead of near the
kernel's socket buffer. The cost is more, smaller reads: a 64 KiB frame in 4 reads instead of 1.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

#: Bytes of a frame beyond its body: the websocket header (14), the fedmist length prefix and MAC (36) and the
#: JSON header -- a RECORDS header is under 1 KiB; 4 KiB leaves room for a longer meta.
FRAME_OVERHEAD = 4 * 1024
#: picows keeps this much of its buffer's end for its SIMD parsers and grows at 90% utilisation.
_PICOWS_SLACK = 256
_GROW_AT = 0.9


@dataclass(frozen=True)
class ReadSizing:
    """How much a connection reads at once (``per_read``) into a buffer of ``initial`` bytes."""

    initial: int
    per_read: int

    @classmethod
    def for_frames(cls, body_bytes: int, per_read: int = 16 * 1024) -> "ReadSizing":
        """The smallest buffer that takes a frame of ``body_bytes`` plus one read without picows growing it."""
        frame = body_bytes + FRAME_OVERHEAD
        initial = int((frame + per_read) / _GROW_AT) + _PICOWS_SLACK + 1
        return cls(initial=initial, per_read=per_read)


class CappedReads(asyncio.BufferedProtocol):
    """A buffered protocol that forwards everything to ``inner`` but offers the socket at most ``per_read`` bytes
    of ``inner``'s read buffer per read (see the module docstring)."""

    def __init__(self, inner: Any, per_read: int) -> None:
        self.inner = inner
        self._per_read = per_read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def get_buffer(self, sizehint: int) -> memoryview:
        view = memoryview(self.inner.get_buffer(sizehint))
        return view[: self._per_read] if len(view) > self._per_read else view

    def buffer_updated(self, nbytes: int) -> None:
        self.inner.buffer_updated(nbytes)
