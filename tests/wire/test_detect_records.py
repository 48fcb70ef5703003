"""Detection records: boxes survive the fixed-size record layout (to 1/65535), counts travel as the label."""

from __future__ import annotations

import numpy as np

from fedmist.wire.detect_records import BOX_BYTES, MAX_BOXES, decode_boxes, encode_boxes, record_feature_bytes


def test_round_trip():
    labels = [np.array([[1, 0.5, 0.25, 0.1, 0.2], [9, 0.0, 1.0, 1.0, 0.5]], dtype=np.float32),
              np.zeros((0, 5), dtype=np.float32),
              np.array([[3, 0.3, 0.3, 0.3, 0.3]], dtype=np.float32)]
    block, counts, dropped = encode_boxes(labels)
    assert block.shape == (3, MAX_BOXES * BOX_BYTES) and block.dtype == np.uint8
    assert counts.tolist() == [2, 0, 1] and dropped == 0
    batch_idx, cls, boxes = decode_boxes(block, counts)
    assert batch_idx.tolist() == [0, 0, 2] and cls.tolist() == [1, 9, 3]
    np.testing.assert_allclose(boxes, np.concatenate([labels[0][:, 1:], labels[2][:, 1:]]), atol=1 / 65535)


def test_too_many_boxes_keep_the_largest():
    many = np.zeros((MAX_BOXES + 5, 5), dtype=np.float32)
    many[:, 1:3] = 0.5
    many[:, 3] = many[:, 4] = np.linspace(0.01, 0.9, MAX_BOXES + 5)
    block, counts, dropped = encode_boxes([many])
    assert (counts[0], dropped) == (MAX_BOXES, 5)
    _, _, boxes = decode_boxes(block, counts)
    assert boxes[:, 2].min() > 0.05  # the five smallest are the ones dropped


def test_record_size_at_the_seeds_setting():
    # yolov5s cut 4 at 640 px: 128x80x80 bits = 102,400 bytes (32x less than float32), plus the box block
    assert record_feature_bytes((128, 80, 80)) == 102_400 + MAX_BOXES * BOX_BYTES
