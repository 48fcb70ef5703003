"""The envelope codec: exact round trips, each validation rule, and fuzzing that only ProtocolError escapes."""

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedmist.wire.arrays import decode_arrays, encode_arrays
from fedmist.wire.envelope import Envelope, Limits, ProtocolError, body_digest, decode, encode


def _frame(header: dict, body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack(">I", len(raw)) + raw + body


def test_round_trip_fills_size_and_hash():
    body = bytes(range(256)) * 3
    env, view = decode(encode(Envelope(type="records", job="j", worker="w", kind="records", meta={"a": 1}), body))
    assert bytes(view) == body
    assert env.size == len(body) and env.blake3 == body_digest(body) and env.meta == {"a": 1}


def test_chunk_at_offset_round_trip():
    chunk = b"x" * 10
    frame = encode(Envelope(type="records", job="j", worker="w", kind="records", size=100, offset=90), chunk)
    env, view = decode(frame)
    assert (env.offset, env.size, bytes(view)) == (90, 100, chunk)


@pytest.mark.parametrize(
    "header, body, message",
    [
        ({"v": 3, "type": "t", "job": "j"}, b"", "header field 'worker' missing"),
        ({"v": 1, "type": "t", "job": "j", "worker": "w", "kind": "raw", "size": 3, "sha256": "0" * 64}, b"abc",
         "protocol version 1 not supported (this peer speaks 3)"),
        ({"v": 2, "type": "t", "job": "j", "worker": "w"}, b"", "protocol version 2 not supported (this peer speaks 3)"),
        ({"v": 3, "type": "t", "job": "j", "worker": "w", "evil": 1}, b"", "unknown header fields ['evil']"),
        ({"v": 3, "type": "t", "job": "j", "worker": "w", "round": "1"}, b"", "header field 'round' must be an integer"),
        ({"v": 3, "type": "t", "job": "j", "worker": "w", "seq": -1}, b"", "header field 'seq' must not be negative"),
        ({"v": 3, "type": "t", "job": "j", "worker": "w"}, b"abc", "payload kind 'none' with a non-empty body"),
        ({"v": 3, "type": "t", "job": "j", "worker": "w", "kind": "pickle"}, b"", "payload kind 'pickle' unknown"),
        ({"v": 3, "type": "t", "job": "j", "worker": "w", "kind": "raw", "size": 2, "blake3": "0" * 64}, b"abc",
         "chunk [0, 3) beyond payload size 2"),
        ({"v": 3, "type": "t", "job": "j", "worker": "w", "kind": "raw", "size": 3, "blake3": "0" * 64}, b"abc",
         "body blake3 mismatch"),
        ({"v": 3, "type": "t", "job": "j", "worker": "w", "meta": {"x": [1e400]}}, b"", "header is not valid JSON"),
    ],
)
def test_each_rule_rejects_with_its_message(header, body, message):
    with pytest.raises(ProtocolError, match=None) as info:
        decode(_frame(header, body))
    assert message in str(info.value)


def test_header_and_chunk_limits():
    limits = Limits(max_header_bytes=64, max_chunk_bytes=8)
    big = {"v": 2, "type": "t", "job": "j" * 100, "worker": "w"}
    with pytest.raises(ProtocolError, match="header length"):
        decode(_frame(big), limits)
    frame = encode(Envelope(type="t", job="j", worker="w", kind="raw"), b"123456789")
    with pytest.raises(ProtocolError, match="chunk of 9 bytes exceeds limit 8"):
        decode(frame, Limits(max_chunk_bytes=8))


def test_safetensors_payload_round_trip_and_rejects_nan():
    arrays = {"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array([7], dtype=np.int64)}
    back = decode_arrays(encode_arrays(arrays))
    assert set(back) == set(arrays) and np.array_equal(back["0.weight"], arrays["0.weight"])
    with pytest.raises(ProtocolError, match="non-finite"):
        decode_arrays(encode_arrays({"w": np.array([np.nan], dtype=np.float32)}))
    with pytest.raises(ProtocolError, match="bad safetensors payload"):
        decode_arrays(b"\x00" * 16)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_protocol_error(data):
    try:
        decode(data)
    except ProtocolError:
        pass


_VALID = encode(Envelope(type="records", job="job", worker="edge1", kind="records", meta={"n": 3}), b"payload!")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(_VALID)))
def test_mutated_frames_only_raise_protocol_error(mutations, cut):
    frame = bytearray(_VALID)
    for position, value in mutations:
        frame[position] = value
    data = bytes(frame[:cut]) if cut < len(frame) else bytes(frame)
    for given_as in (data, memoryview(data)):  # the ws channel decodes views into picows' read buffer
        try:
            decode(given_as)
        except ProtocolError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_safetensors_only_raise_protocol_error(data):
    try:
        decode_arrays(data)
    except ProtocolError:
        pass


@pytest.mark.parametrize("worker", ["../x", "/x", "a/b", "a\x00b", "Edge1", "edge_1", "-edge", "edge-", "e" * 64,
                                    "edge1\n", ".."])
def test_a_worker_name_that_is_not_a_dns_label_is_refused_at_decode(worker):
    frame = encode(Envelope(type="hello", job="j", worker=worker))
    with pytest.raises(ProtocolError) as refused:
        decode(frame)
    assert str(refused.value) == (f"header field 'worker' {worker!r} is not a DNS-1123 label "
                                  "([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)")


@pytest.mark.parametrize("worker", ["edge1", "a", "trainer-12", "e" * 63, "aggregator"])
def test_dns_label_worker_names_pass(worker):
    assert decode(encode(Envelope(type="hello", job="j", worker=worker)))[0].worker == worker
