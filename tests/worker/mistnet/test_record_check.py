"""The aggregator's record rules: detection boxes and counts judged against the task, with exact refusals."""

from __future__ import annotations

import numpy as np
import pytest

from fedmist.wire import detect_records as dr
from fedmist.wire import messages as msg
from fedmist.worker.mistnet.record_check import RecordCheck, RecordsRefused

SHAPE = (4, 2, 2)  # 16 bits -> 2 bytes, then the box block


def _detect(nc: int = 3) -> RecordCheck:
    return RecordCheck("detect", nc, SHAPE)


def _records(labels: list[np.ndarray]) -> bytearray:
    """Real detection records as the edge writes them (bits zero), via detect_records.encode_boxes."""
    blocks, counts, _ = dr.encode_boxes(labels)
    bits = np.zeros((len(labels), dr.bits_bytes(SHAPE)), np.uint8)
    return bytearray(np.concatenate([bits, blocks, counts[:, None]], axis=1).tobytes())


def _record_bytes() -> int:
    return dr.record_feature_bytes(SHAPE) + 1


def test_detection_records_the_edge_writes_pass():
    boxes = [np.array([[0, 0.5, 0.5, 0.2, 0.2], [2, 0.1, 0.9, 0.1, 0.1]], np.float32), np.zeros((0, 5), np.float32)]
    _detect().records(_records(boxes), SHAPE, 0)
    meta = msg.RecordsMeta(num_samples=2, feature_bytes=dr.record_feature_bytes(SHAPE), label_bytes=1,
                           feature_shape=list(SHAPE), epsilon="inf")
    _detect().layout(meta)


def test_a_box_of_a_class_the_model_lacks_is_refused():
    boxes = [np.zeros((0, 5), np.float32), np.array([[1, 0.5, 0.5, 0.2, 0.2], [3, 0.5, 0.5, 0.2, 0.2]], np.float32)]
    with pytest.raises(RecordsRefused) as refused:
        _detect().records(_records(boxes), SHAPE, 40)
    assert str(refused.value) == "record 41 box 1 has class 3, outside [0, 3)"


def test_a_box_count_beyond_the_record_is_refused_and_unused_slots_are_not_judged():
    data = _records([np.array([[1, 0.5, 0.5, 0.2, 0.2]], np.float32)])
    record = _record_bytes()
    data[record - 1 - 2 * dr.BOX_FIELDS * (dr.MAX_BOXES - 5)] = 200  # garbage in an unused slot: ignored
    _detect().records(data, SHAPE, 0)
    data[record - 1] = dr.MAX_BOXES + 1
    with pytest.raises(RecordsRefused) as refused:
        _detect().records(data, SHAPE, 7)
    assert str(refused.value) == f"record 7 has {dr.MAX_BOXES + 1} boxes, at most {dr.MAX_BOXES} fit a record"


def test_detection_layout_must_carry_the_box_block():
    meta = msg.RecordsMeta(num_samples=2, feature_bytes=dr.bits_bytes(SHAPE), label_bytes=1,
                           feature_shape=list(SHAPE), epsilon="inf")
    with pytest.raises(RecordsRefused) as refused:
        _detect().layout(meta)
    assert str(refused.value) == f"records feature_bytes 2, feature_shape [4, 2, 2] takes {dr.record_feature_bytes(SHAPE)}"


def test_two_byte_labels_for_many_classes():
    check = RecordCheck("classify", 300, (16,))
    rows = np.zeros((3, 4), np.uint8)
    rows[:, 2:] = np.array([5, 299, 300], "<u2").view(np.uint8).reshape(3, 2)
    with pytest.raises(RecordsRefused) as refused:
        check.records(rows.tobytes(), (16,), 10)
    assert str(refused.value) == "record 12 has label 300, outside [0, 300) (1 such records in this chunk)"


def test_without_a_known_shape_the_first_completed_upload_pins_it():
    check = RecordCheck("classify", 10, None)
    check.pin((16,))
    meta = msg.RecordsMeta(num_samples=2, feature_bytes=3, label_bytes=1, feature_shape=[24], epsilon="inf")
    with pytest.raises(RecordsRefused) as refused:
        check.layout(meta)
    assert str(refused.value) == "records feature_shape [24], the task's edge part produces [16]"
