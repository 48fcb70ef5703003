"""Fixed-size feature records for detection: one image's packed bits followed by its boxes.

The feature store holds fixed-size records ``features | label`` (DESIGN 5.5). Detection images have a variable
number of boxes, so a record's feature part is ``ceil(r / 8)`` bytes of packed bits followed by a box block of
``MAX_BOXES`` slots of five little-endian uint16 (class, cx, cy, w, h; coordinates normalised to the
letterboxed image and quantised to 1/65535), and the one-byte label is the number of boxes used. The layout is
fixed so every edge's store has the same record size; the store, the transports and their validation work
unchanged. Images with more than ``MAX_BOXES`` boxes keep the largest ones (the edge logs how many it drops).
"""

from __future__ import annotations

import math

import numpy as np

MAX_BOXES = 100
BOX_FIELDS = 5
BOX_BYTES = 2 * BOX_FIELDS
QUANT = 65535.0


def bits_bytes(feature_shape: tuple[int, ...]) -> int:
    return (math.prod(feature_shape) + 7) // 8


def record_feature_bytes(feature_shape: tuple[int, ...]) -> int:
    """The record's feature part: packed bits plus the box block."""
    return bits_bytes(feature_shape) + MAX_BOXES * BOX_BYTES


def encode_boxes(labels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """``(B, MAX_BOXES * BOX_BYTES)`` uint8 box blocks, ``(B,)`` uint8 counts, and the number of boxes dropped."""
    blocks = np.zeros((len(labels), MAX_BOXES, BOX_FIELDS), dtype="<u2")
    counts = np.zeros(len(labels), dtype=np.uint8)
    dropped = 0
    for row, boxes in enumerate(labels):
        if len(boxes) > MAX_BOXES:
            dropped += len(boxes) - MAX_BOXES
            boxes = boxes[np.argsort(-(boxes[:, 3] * boxes[:, 4]), kind="stable")[:MAX_BOXES]]
        n = len(boxes)
        blocks[row, :n, 0] = boxes[:, 0].astype(np.uint16)
        blocks[row, :n, 1:] = np.round(np.clip(boxes[:, 1:5], 0.0, 1.0) * QUANT).astype(np.uint16)
        counts[row] = n
    return blocks.view(np.uint8).reshape(len(labels), -1), counts, dropped


def decode_boxes(block: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box blocks + counts -> ``batch_idx (M,)``, ``cls (M,)``, ``bboxes (M, 4)`` normalised xywh (float32)."""
    b = len(counts)
    boxes = np.ascontiguousarray(block).view("<u2").reshape(b, MAX_BOXES, BOX_FIELDS)
    counts = np.minimum(np.asarray(counts, dtype=np.int64), MAX_BOXES)
    mask = np.arange(MAX_BOXES)[None, :] < counts[:, None]
    batch_idx = np.nonzero(mask)[0].astype(np.float32)
    chosen = boxes[mask]
    return batch_idx, chosen[:, 0].astype(np.float32), chosen[:, 1:].astype(np.float32) / QUANT
