"""One update folded into a round's running weighted sum slice by slice, as its bytes arrive -- and undone exactly.

Why: a FedAvg-family aggregator that first receives a whole update and then folds it holds three model copies
at its peak (global model, running sum, the update). Folding each received slice at once leaves two. The catch
is validation: a NaN may sit in the update's *last* chunk, after everything before it was already added, and a
rejected update must leave the round as if it never came. Subtracting what was added cannot work, because the
added values are gone (keeping them is the copy this module exists to avoid), and ``(s + a) - a`` is not ``s``
in float32 anyway. So every slice first writes the sum values it is about to change to an *undo journal*, a
temporary file (bounded by the model's size, on disk, not in memory), and a rollback copies them back: the
round's sum is bit-for-bit what it was before the update started. While no update has been accepted yet the
sum is all zeros and needs no journal: a rollback just zeroes the slices that were written.

Each slice is checked finite before it is folded, so non-finite values never reach the sum. The journal
coalesces contiguous slices, so its index holds one record per tensor, however small the chunks are.

Thread safety: an S3 download calls :meth:`PartialFold.fold` from a worker thread while the round engine may
close the round on the event loop; a lock makes fold, commit and rollback atomic with respect to each other.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import IO

import numpy as np

from fedmist.strategy.aggregate import WeightedSum, is_floating
from fedmist.strategy.types import Weights


class FoldClosed(RuntimeError):
    """The fold was rolled back or committed already (the round ended under it): stop feeding it."""


class PartialFold:
    """``weight * update`` being added to a :class:`WeightedSum` in slices; :meth:`commit` or :meth:`rollback`.

    ``fold(key, start, values)`` adds elements ``start .. start + len(values)`` of the flattened entry ``key``.
    Slices of one entry must come in order from element 0 (a safetensors payload is read front to back).
    """

    def __init__(self, acc: WeightedSum, reference: Weights, worker: str, weight: float,
                 spool_dir: Path | None = None) -> None:
        self.acc, self.reference, self.worker, self.weight = acc, reference, worker, float(weight)
        self.spool_dir = spool_dir
        self.folded = 0  # values added to the sum so far (reported when an update is rolled back)
        self.state = "open"  # open | committed | rolled back
        self._pristine = acc.count == 0  # nothing accepted yet: the sum is zeros, no journal needed
        self._journal: IO[bytes] | None = None
        self._records: list[list] = []  # [key, start, count] of the sum values saved, contiguous ones merged
        self._touched: dict[str, int] = {}  # key -> elements folded so far (the pristine rollback zeroes them)
        self._staged: Weights = {}  # non-floating entries this update would carry if it is the first accepted
        self._lock = threading.Lock()

    def fold(self, key: str, start: int, values: np.ndarray) -> None:
        """Add ``weight * values`` at elements ``[start, start + len)`` of ``key``; ValueError if not finite."""
        with self._lock:
            if self.state != "open":
                raise FoldClosed(f"update of {self.worker} is {self.state}")
            ref = self.reference[key]
            end = start + len(values)
            if not 0 <= start <= end <= ref.size:
                raise ValueError(f"{self.worker}: {key} slice {start}..{end} outside its {ref.size} values")
            if not is_floating(ref):
                self._stage(key, ref, start, end, values)
                return
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise ValueError(f"tensor {key!r} holds non-finite values")
            target = self.acc.sum_of(key).reshape(-1)[start:end]
            if self._pristine:
                self._touched[key] = max(self._touched.get(key, 0), end)
            else:
                self._save(key, start, target)
            target += np.multiply(values, self.weight, dtype=target.dtype)
            self.folded += end - start

    def commit(self) -> None:
        """Book the update in the sum (its weight, and its counters if it is the first accepted)."""
        with self._lock:
            if self.state != "open":
                raise FoldClosed(f"update of {self.worker} is {self.state}")
            self.acc.commit(self.weight, self._staged)
            self.state = "committed"
            self._close_journal()

    def rollback(self) -> int:
        """Put the sum back exactly as it was before this update; return the values undone. Idempotent."""
        with self._lock:
            if self.state != "open":
                return 0
            self.state = "rolled back"
            if self._pristine:
                for key, end in self._touched.items():
                    self.acc.sum_of(key).reshape(-1)[:end] = 0
            elif self._journal is not None:
                self._journal.seek(0)
                for key, start, count in self._records:
                    target = self.acc.sum_of(key).reshape(-1)[start:start + count]
                    if self._journal.readinto(memoryview(target).cast("B")) != target.nbytes:
                        raise RuntimeError(f"undo journal of {self.worker} is short at {key}")
            self._staged = {}
            self._close_journal()
            return self.folded

    def _save(self, key: str, start: int, target: np.ndarray) -> None:
        if self._journal is None:
            self._journal = tempfile.TemporaryFile(prefix="fedmist-undo-", dir=self.spool_dir)
        self._journal.write(memoryview(target).cast("B"))
        last = self._records[-1] if self._records else None
        if last is not None and last[0] == key and last[1] + last[2] == start:
            last[2] += len(target)
        else:
            self._records.append([key, start, len(target)])

    def _stage(self, key: str, ref: np.ndarray, start: int, end: int, values: np.ndarray) -> None:
        """Counters/masks are not summed: keep them only while the sum has none yet (one tensor at most)."""
        if self.acc.carries(key):
            return
        staged = self._staged.get(key)
        if staged is None:
            staged = self._staged[key] = np.zeros(ref.shape, dtype=ref.dtype)
        staged.reshape(-1)[start:end] = values

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()  # a TemporaryFile: closing removes it
            self._journal = None
        self._records = []
        self._touched = {}
