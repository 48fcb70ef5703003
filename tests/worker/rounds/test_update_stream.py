"""fedmist.worker.rounds.update_stream: a safetensors update folded chunk by chunk, whatever the chunk borders, and a
bad one rolled back with its reason while the rest of the message is read and dropped."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save

from fedmist.strategy.streaming import FoldClosed
from fedmist.wire.envelope import ProtocolError
from fedmist.worker.rounds.update_stream import UpdateStream


class FakeFold:
    """Records every fold call; ``closed_after`` raises FoldClosed once that many calls were made."""

    def __init__(self, closed_after: int | None = None) -> None:
        self.calls: list[tuple[str, int, list[float]]] = []
        self.rolled_back = 0
        self.closed_after = closed_after

    def fold(self, name: str, start: int, values: np.ndarray) -> None:
        if self.closed_after is not None and len(self.calls) >= self.closed_after:
            raise FoldClosed("round over")
        if not np.isfinite(values).all():
            raise ValueError(f"{name}: non-finite value")
        self.calls.append((name, start, values.tolist()))

    def rollback(self) -> int:
        self.rolled_back += 1
        return len(self.calls)

    def values(self) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for name, start, vals in self.calls:
            assert len(found.setdefault(name, [])) == start  # each tensor's elements arrive in order
            found[name].extend(vals)
        return found


def _payload(**arrays: np.ndarray) -> bytes:
    return save(arrays)


def _feed(payload: bytes, sizes: list[int], fold: FakeFold) -> tuple[UpdateStream, list[Any]]:
    layouts: list[Any] = []

    def open_fold(layout: Any) -> FakeFold:
        layouts.append(layout)
        return fold

    stream = UpdateStream(len(payload), open_fold)
    offset = 0
    for size in sizes:
        stream.feed(offset, payload[offset:offset + size])
        offset += size
    stream.finish()
    return stream, layouts


@pytest.mark.parametrize("chunk", [1, 3, 5, 8, 1000])
def test_any_chunking_folds_every_value_once_in_order(chunk: int) -> None:
    payload = _payload(a=np.array([1.5, -2.0, 3.25], np.float32), b=np.array([[7, 8]], np.int64))
    fold = FakeFold()
    stream, layouts = _feed(payload, [chunk] * (len(payload) // chunk + 1), fold)
    assert stream.error is None and not stream.closed and stream.received == len(payload)
    assert layouts == [{"a": ((3,), np.dtype("float32")), "b": ((1, 2), np.dtype("int64"))}]
    assert fold.values() == {"a": [1.5, -2.0, 3.25], "b": [7, 8]}
    assert fold.rolled_back == 0


def test_a_chunk_out_of_order_is_a_protocol_error() -> None:
    payload = _payload(a=np.zeros(2, np.float32))
    stream = UpdateStream(len(payload), lambda layout: FakeFold())
    stream.feed(0, payload[:4])
    with pytest.raises(ProtocolError, match=r"^update chunk at offset 5, expected 4$"):
        stream.feed(5, payload[5:])


def test_a_payload_shorter_than_the_prefix_is_refused_at_once() -> None:
    with pytest.raises(ProtocolError, match=r"^weights payload of 7 bytes is too short for safetensors$"):
        UpdateStream(7, lambda layout: FakeFold())


def test_a_bad_value_rolls_back_and_the_rest_is_dropped() -> None:
    payload = _payload(a=np.array([1.0, np.nan, 2.0], np.float32))
    fold = FakeFold()
    stream, _ = _feed(payload, [len(payload) - 4, 4], fold)
    assert stream.error == "a: non-finite value" and stream.discarding
    assert fold.rolled_back == 1 and stream.received == len(payload)


def test_an_update_cut_short_is_refused_on_finish() -> None:
    payload = _payload(a=np.array([1.0, 2.0], np.float32))
    fold = FakeFold()
    stream = UpdateStream(len(payload), lambda layout: fold)
    stream.feed(0, payload[:-2])
    stream.finish()
    assert stream.error == f"update ended after {len(payload) - 2} of {len(payload)} bytes"
    assert fold.rolled_back == 1


def test_a_round_that_closes_under_the_update_marks_it_late_not_bad() -> None:
    payload = _payload(a=np.array([1.0], np.float32), b=np.array([2.0], np.float32))
    fold = FakeFold(closed_after=1)
    stream, _ = _feed(payload, [len(payload)], fold)
    assert stream.closed and stream.error is None and fold.rolled_back == 0


def test_a_garbled_header_is_refused_before_any_fold_opens() -> None:
    payload = (16).to_bytes(8, "little") + b"{not json at all"
    opened: list[Any] = []
    stream = UpdateStream(len(payload), lambda layout: opened.append(layout) or FakeFold())
    stream.feed(0, payload)
    stream.finish()
    assert stream.error == ("safetensors header is not JSON: Expecting property name enclosed in double quotes: "
                            "line 1 column 2 (char 1)")
    assert opened == []
