"""fedmist.models.detect_extract: the detection edge's batch size, input scaling, bits and record stream."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from torch import nn

from fedmist.models.detect_extract import (
    DetectionRecordStream,
    detection_feature_shape,
    edge_bits,
    extract_batch_size,
    images_to_float,
)
from fedmist.privacy.channel import pack_bits
from fedmist.wire.detect_records import BOX_BYTES, MAX_BOXES, decode_boxes


def test_batches_shrink_with_the_image_area_within_2_and_64() -> None:
    assert [extract_batch_size(s) for s in (640, 320, 1280, 4096, 64, 32)] == [8, 32, 2, 2, 64, 64]


def test_images_are_scaled_to_the_unit_interval() -> None:
    x = images_to_float(np.array([[[[0, 255], [51, 102]]]], dtype=np.uint8))
    assert x.dtype == torch.float32 and torch.allclose(x, torch.tensor([[[[0.0, 1.0], [0.2, 0.4]]]]))


class Edge(nn.Module):
    """A fixed 2x2-stride probe: the sign of (pixel - 0.5) per channel, on a quarter of the pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::2, ::2] - 0.5


def test_the_feature_shape_comes_from_a_probe_and_keeps_the_training_mode() -> None:
    edge = Edge().train()
    assert detection_feature_shape(edge, 8) == (3, 4, 4)
    assert edge.training


def test_edge_bits_are_the_signs_flattened() -> None:
    images = np.zeros((1, 3, 2, 2), dtype=np.uint8)
    images[0, 1, 0, 0] = 200
    bits = edge_bits(Edge(), images)
    assert bits.dtype == torch.bool and bits.tolist() == [[False, True, False]]


class Data:
    """Three 2x2 images and their boxes, as DetectionDataset.batch returns them."""

    def __init__(self) -> None:
        self.images = np.stack([np.full((3, 2, 2), v, dtype=np.uint8) for v in (0, 255, 0)])
        self.images[2, 2] = 255
        self.labels = [np.array([[1, 0.5, 0.5, 0.2, 0.2]], np.float32), np.zeros((0, 5), np.float32),
                       np.tile(np.array([[2, 0.1, 0.1, 0.1, 0.1]], np.float32), (MAX_BOXES + 3, 1))]

    def __len__(self) -> int:
        return 3

    def batch(self, start: int, end: int):
        return self.images[start:end], self.labels[start:end]


def test_records_are_packed_bits_then_boxes_then_the_count_and_all_is_hashed() -> None:
    stream = DetectionRecordStream(Edge(), Data(), math.inf, seed=0, batch_size=2)
    chunks = list(stream)
    assert [start for start, _ in chunks] == [0, 2]
    record = 1 + MAX_BOXES * BOX_BYTES + 1  # 3 bits packed in one byte, the box block, the count
    rows = np.frombuffer(b"".join(data for _, data in chunks), np.uint8).reshape(3, record)
    assert rows[:, 0].tolist() == [0, pack_bits(np.array([[1, 1, 1]], np.uint8))[0, 0],
                                   pack_bits(np.array([[0, 0, 1]], np.uint8))[0, 0]]
    assert rows[:, -1].tolist() == [1, 0, MAX_BOXES]  # the extra boxes are dropped and counted
    assert stream.dropped_boxes == 3
    batch_idx, cls, boxes = decode_boxes(rows[:1, 1:-1], rows[:1, -1])
    assert batch_idx.tolist() == [0.0] and cls.tolist() == [1.0]
    np.testing.assert_allclose(boxes, [[0.5, 0.5, 0.2, 0.2]], atol=1e-4)
    assert stream.digest.hexdigest() == hashlib.sha256(b"".join(d for _, d in chunks)).hexdigest()


def test_the_edges_own_noise_is_applied_with_each_batchs_first_index() -> None:
    starts: list[int] = []

    def flip_all(bits: torch.Tensor, start: int) -> torch.Tensor:
        starts.append(start)
        return ~bits

    stream = DetectionRecordStream(Edge(), Data(), 1.0, seed=None, batch_size=1, noise=flip_all)
    first = next(iter(stream))[1]
    assert stream.batch_size == 2 and starts == [0]  # never fewer than 2 per batch
    assert first[0] == pack_bits(np.array([[1, 1, 1]], np.uint8))[0, 0]  # image 0's clean bits are all 0
