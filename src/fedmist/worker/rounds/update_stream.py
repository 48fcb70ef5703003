"""A trainer's safetensors update read as a byte stream and folded into the round's sum as it arrives.

Why: the aggregator of a FedAvg-family job should hold the global model and the running sum, not also the one
update being received (issue 3: "about two copies"). :class:`UpdateStream` is the sink the payload layer feeds
with each chunk, in order: it keeps the 8-byte prefix and the JSON header (at most ``MAX_HEADER_BYTES``),
judges the update from the header alone (keys, shapes, dtypes, offsets -- refused before anything is folded),
then hands each tensor's elements to the strategy's :class:`~fedmist.strategy.streaming.PartialFold` chunk by
chunk. An element split across two chunks waits in a carry of at most 7 bytes. Bytes between tensors are
skipped.

A bad update (bad header, wrong layout, a non-finite value in any chunk) does not raise into the payload
layer: the fold is rolled back, the reason kept in :attr:`UpdateStream.error`, and the rest of the message
is read and dropped, so the connection stays in step and the round goes on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedmist.strategy.aggregate import Layout
from fedmist.strategy.streaming import FoldClosed, PartialFold
from fedmist.wire.arrays import TensorSpec, header_length, parse_header
from fedmist.wire.envelope import ProtocolError

#: Opens the fold once the header is known (``Strategy.open_fold`` bound to the worker and its samples).
OpenFold = Callable[[Layout], PartialFold]


class UpdateStream:
    """Feed with ``feed(offset, chunk)`` in payload order; then :meth:`finish` and read :attr:`error`."""

    def __init__(self, size: int, open_fold: OpenFold) -> None:
        if size < 8:
            raise ProtocolError(f"weights payload of {size} bytes is too short for safetensors")
        self.size = size
        self._open_fold = open_fold
        self.fold: PartialFold | None = None
        self.error: str | None = None  # why the update was refused (then the rest of it is discarded)
        self.closed = False  # the round ended under the update (it is late, not bad)
        self._prefix = bytearray()  # 8-byte length, then the JSON header: bounded by MAX_HEADER_BYTES
        self._data_start = 0  # payload offset of the data region, once the header is parsed
        self._specs: list[TensorSpec] = []
        self._next = 0  # index into _specs (ordered by offset) of the tensor being filled
        self._done = 0  # elements of that tensor already folded
        self._carry = bytearray()  # an element split across chunks (< itemsize bytes)
        self.received = 0

    @property
    def discarding(self) -> bool:
        return self.error is not None or self.closed

    def feed(self, offset: int, chunk: bytes | bytearray | memoryview) -> None:
        """Take the payload bytes at ``offset`` (which must continue the previous chunk)."""
        if offset != self.received:
            raise ProtocolError(f"update chunk at offset {offset}, expected {self.received}")
        view = memoryview(chunk).cast("B")
        self.received += len(view)
        if self.discarding:
            return
        try:
            if not self._data_start:
                view = self._read_header(view, offset)
                if not self._data_start:
                    return
                offset = self._data_start
            self._fold_data(offset - self._data_start, view)
        except FoldClosed:
            self.closed = True
        except (ProtocolError, ValueError) as exc:
            self.reject(str(exc))

    def finish(self) -> None:
        """After the last chunk: an update that ended inside its header or an element is refused."""
        if self.discarding:
            return
        if self.received != self.size:
            self.reject(f"update ended after {self.received} of {self.size} bytes")
        elif not self._data_start or self._carry:
            self.reject("update ended inside its header or a value")

    def reject(self, reason: str) -> None:
        """Refuse the update: roll back whatever it folded and discard the rest."""
        self.error = self.error or reason
        self.rollback()

    def rollback(self) -> int:
        return self.fold.rollback() if self.fold is not None else 0

    def _read_header(self, view: memoryview, offset: int) -> memoryview:
        """Collect the prefix and header; once complete, open the fold and return the bytes after it."""
        wanted = 8 if len(self._prefix) < 8 else 8 + header_length(self._prefix, self.size)
        while True:
            take = min(wanted - len(self._prefix), len(view))
            self._prefix += view[:take]
            view = view[take:]
            if len(self._prefix) < wanted:
                return view
            if wanted > 8:
                break
            wanted = 8 + header_length(self._prefix, self.size)
        header_end = len(self._prefix)
        specs = parse_header(memoryview(self._prefix)[8:], self.size - header_end)
        self._prefix = bytearray()
        self.fold = self._open_fold({s.name: (s.shape, s.dtype) for s in specs})
        self._specs = sorted((s for s in specs if s.end > s.start), key=lambda s: s.start)
        self._data_start = header_end
        return view

    def _fold_data(self, position: int, view: memoryview) -> None:
        """Fold the data-region bytes ``view`` that start at ``position`` into their tensors."""
        assert self.fold is not None
        while len(view):
            if self._next >= len(self._specs):
                return  # trailing bytes after the last tensor: not part of any value
            spec = self._specs[self._next]
            if position < spec.start:  # a gap between tensors
                skip = min(spec.start - position, len(view))
                position, view = position + skip, view[skip:]
                continue
            take = min(spec.end - position, len(view))
            self._fold_piece(spec, view[:take])
            position, view = position + take, view[take:]
            if position >= spec.end:
                self._next, self._done = self._next + 1, 0

    def _fold_piece(self, spec: TensorSpec, piece: memoryview) -> None:
        size = spec.dtype.itemsize
        if self._carry:
            need = min(size - len(self._carry), len(piece))
            self._carry += piece[:need]
            piece = piece[need:]
            if len(self._carry) < size:
                return
            self._fold_values(spec, np.frombuffer(bytes(self._carry), dtype=spec.dtype))
            self._carry = bytearray()
        whole = len(piece) // size * size
        if whole:
            self._fold_values(spec, np.frombuffer(piece[:whole], dtype=spec.dtype))
        self._carry += piece[whole:]

    def _fold_values(self, spec: TensorSpec, values: np.ndarray) -> None:
        assert self.fold is not None
        self.fold.fold(spec.name, self._done, values)
        self._done += len(values)
