"""What the aggregator accepts from an edge's record stream, judged against the task before a byte is stored.

Why: the job token is shared by every edge of a job, so an authenticated edge is not a trusted one. Records
with a label outside ``[0, num_classes)``, a box of a class the model lacks, or a layout other than the one the
task's edge part produces used to reach cloud training and crash it -- and a crashed aggregator restarts into
the same stored records, so one edge could hold the whole job in a restart loop. Here each layout announcement
and each chunk is checked; a violation raises :class:`RecordsRefused`, the upload server refuses that edge with
the reason (log, ERROR reply, status) and the job goes on with the others.

The layout expected (DESIGN 5.5, ``detect_records``):

- classification: ``ceil(prod(feature_shape) / 8)`` bytes of packed bits, then a little-endian label of 1 byte
  (``num_classes <= 256``) or 2 bytes; every label ``< num_classes``.
- detection: packed bits, then ``MAX_BOXES`` slots of five uint16 (class, cx, cy, w, h), then a one-byte box
  count; count ``<= MAX_BOXES`` and every used slot's class ``< num_classes``. Coordinates are uint16 fractions
  of 65535, so every value the layout can carry is already normalised in [0, 1].

The feature shape is the one the aggregator computes from its own model and cut (a probe through the edge
part); when it cannot (a classification job without a test set to probe with), the first edge whose upload
completes pins it for the rest, so edges of two layouts never meet in one training set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedmist.wire import detect_records
from fedmist.wire import messages as msg
from fedmist.wire.envelope import ProtocolError


class RecordsRefused(ProtocolError):
    """An edge's records do not fit the task: that edge is refused for the rest of the job (not retried)."""


@dataclass
class RecordCheck:
    """The record rules of one task; ``feature_shape`` None until the first accepted layout pins it."""

    task: str  # "classify" | "detect"
    num_classes: int
    feature_shape: tuple[int, ...] | None = None

    @classmethod
    def for_task(cls, task: msg.TaskMeta, feature_shape: tuple[int, ...] | None) -> "RecordCheck":
        return cls(task.task, task.num_classes, tuple(feature_shape) if feature_shape is not None else None)

    @property
    def label_bytes(self) -> int:
        return 1 if self.task == "detect" or self.num_classes <= 256 else 2

    def feature_bytes(self, shape: tuple[int, ...]) -> int:
        """The record's feature part for ``shape``: packed bits (plus the box block for detection)."""
        if self.task == "detect":
            return detect_records.record_feature_bytes(shape)
        return (math.prod(shape) + 7) // 8

    def layout(self, meta: msg.RecordsMeta) -> None:
        """Refuse a layout other than the task's (or other than the pinned one)."""
        shape = tuple(meta.feature_shape)
        if any(d < 1 for d in shape):
            raise RecordsRefused(f"records feature_shape {list(shape)} has a dimension below 1")
        if self.feature_shape is not None and shape != self.feature_shape:
            raise RecordsRefused(f"records feature_shape {list(shape)}, the task's edge part produces "
                                 f"{list(self.feature_shape)}")
        if meta.label_bytes != self.label_bytes:
            raise RecordsRefused(f"records label_bytes {meta.label_bytes}, the task's {self.num_classes} classes "
                                 f"take {self.label_bytes}")
        wanted = self.feature_bytes(shape)
        if meta.feature_bytes != wanted:
            raise RecordsRefused(f"records feature_bytes {meta.feature_bytes}, feature_shape {list(shape)} takes "
                                 f"{wanted}")

    def pin(self, shape: tuple[int, ...]) -> None:
        """An upload of ``shape`` completed: when the task did not fix the shape, it is now fixed for every
        other edge (pinned at completion, not at the first frame, so an edge that is refused midway or
        never finishes cannot lock the others out)."""
        if self.feature_shape is not None and tuple(shape) != self.feature_shape:
            raise RecordsRefused(f"records feature_shape {list(shape)}, the job's other uploads have "
                                 f"{list(self.feature_shape)}")
        self.feature_shape = tuple(shape)

    def records(self, data: bytes | bytearray | memoryview, shape: tuple[int, ...], first_record: int) -> None:
        """Refuse a chunk of whole records of a checked layout (feature ``shape``) holding a label or box
        the task cannot train on; ``first_record`` is the chunk's first record index, for the message."""
        feature = self.feature_bytes(tuple(shape))
        record = feature + self.label_bytes
        if len(data) % record:
            raise ProtocolError(f"records chunk of {len(data)} bytes is not whole {record}-byte records")
        rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
        labels = np.ascontiguousarray(rows[:, feature:]).view(f"<u{self.label_bytes}").reshape(-1)
        if self.task == "detect":
            self._boxes(rows, feature, labels, first_record)
            return
        bad = np.flatnonzero(labels >= self.num_classes)
        if bad.size:
            raise RecordsRefused(f"record {first_record + int(bad[0])} has label {int(labels[bad[0]])}, outside "
                                 f"[0, {self.num_classes}) ({bad.size} such records in this chunk)")

    def _boxes(self, rows: np.ndarray, feature: int, counts: np.ndarray, first_record: int) -> None:
        too_many = np.flatnonzero(counts > detect_records.MAX_BOXES)
        if too_many.size:
            raise RecordsRefused(f"record {first_record + int(too_many[0])} has {int(counts[too_many[0]])} boxes, "
                                 f"at most {detect_records.MAX_BOXES} fit a record")
        start = feature - detect_records.MAX_BOXES * detect_records.BOX_BYTES
        block = np.ascontiguousarray(rows[:, start:feature]).view("<u2").reshape(
            len(rows), detect_records.MAX_BOXES, detect_records.BOX_FIELDS)
        used = np.arange(detect_records.MAX_BOXES)[None, :] < counts[:, None].astype(np.int64)
        classes = np.where(used, block[:, :, 0], 0)
        bad = np.argwhere(classes >= self.num_classes)
        if bad.size:
            row, slot = (int(v) for v in bad[0])
            raise RecordsRefused(f"record {first_record + row} box {slot} has class {int(classes[row, slot])}, "
                                 f"outside [0, {self.num_classes})")
