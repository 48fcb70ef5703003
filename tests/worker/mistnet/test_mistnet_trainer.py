"""fedmist.worker.mistnet.trainer's own logic, without an aggregator: the record layout, the ws framing of a
resumed upload, the effective epsilons, the edge model's errors and the reconnect/give-up loop."""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedmist.privacy.edge import EdgePrivacy
from fedmist.privacy.noise import CoupledNoise
from fedmist.transport.base import TransportError
from fedmist.wire import messages as msg
from fedmist.wire.envelope import Envelope
from fedmist.worker.context import WorkerContext
from fedmist.worker.errors import ConfigurationError, JobFailure
from fedmist.worker.mistnet import trainer
from fedmist.worker.report import Reporter


def _ctx(tmp_path: Path, **env: str) -> WorkerContext:
    return WorkerContext.from_env("trainer", {"JOB_NAME": "j", "WORKER_NAME": "edge1", "AGG_PORT": "7999",
                                              "FEDMIST_STATE_DIR": str(tmp_path / "state"), "epsilon": "1", **env})


def _task(**fields: Any) -> msg.TaskMeta:
    base: dict[str, Any] = dict(algorithm="mistnet", model="lenet5", cut_layer=3, epsilon="2.0", batch_size=32,
                                num_classes=10, chunk_records=100)
    return msg.TaskMeta(**{**base, **fields})


class FakeChannel:
    """Records what is sent; ``replies`` are returned by recv in order (an exception is raised instead)."""

    def __init__(self, replies: list[Any] | None = None) -> None:
        self.sent: list[tuple[Envelope, bytes]] = []
        self.replies = list(replies or [])
        self.bytes_sent = 0
        self.bytes_received = 0
        self.closed = False

    async def send(self, envelope: Envelope, body: bytes | memoryview = b"") -> int:
        self.sent.append((envelope, bytes(body)))
        self.bytes_sent += 10 + len(body)
        return 10 + len(body)

    async def recv(self, timeout: float) -> tuple[Envelope, memoryview]:
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply, memoryview(b"")

    async def close(self) -> None:
        self.closed = True


class ChunkStream:
    """What send_records reads: ``(first_index, bytes)`` chunks with a digest and compute seconds."""

    def __init__(self, chunks: list[tuple[int, bytes]]) -> None:
        self.chunks = chunks
        self.digest = hashlib.sha256(b"".join(data for _, data in chunks))
        self.compute_s = 0.5

    def __iter__(self):
        return iter(self.chunks)


def test_ws_records_skip_what_the_aggregator_holds_and_go_in_whole_record_frames(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(trainer, "FRAME_BYTES", 7)  # 3-byte records: two whole records (6 bytes) per frame
    record = 3
    chunk0, chunk1 = bytes(range(12)), bytes(range(100, 109))  # records 0-3, then records 4-6
    stream = ChunkStream([(0, chunk0), (4, chunk1)])
    channel = FakeChannel()
    reporter = Reporter(None, "edge1", "trainer")
    layout = {"num_samples": 7, "feature_bytes": 2, "label_bytes": 1}
    s3_bytes = asyncio.run(trainer.send_records(_ctx(tmp_path), channel, stream, record, layout, 3, reporter))
    assert s3_bytes == 0
    frames = [(e.type, e.kind, e.size, e.offset, body) for e, body in channel.sent[:-1]]
    assert frames == [  # record 3 of the first chunk (0-2 are held), then 4-5 and 6
        ("records", "records", 21, 9, chunk0[9:12]),
        ("records", "records", 21, 12, chunk1[0:6]),
        ("records", "records", 21, 18, chunk1[6:9]),
    ]
    assert all(e.meta is layout and (e.job, e.worker) == ("j", "edge1") for e, _ in channel.sent[:-1])
    done, body = channel.sent[-1]
    assert (done.type, body) == (msg.RECORDS_DONE, b"")
    assert done.meta == {"num_samples": 7, "sha256": hashlib.sha256(chunk0 + chunk1).hexdigest(),
                         "compute_s": 0.5, "bytes_up": 13 + 16 + 13}
    assert reporter.data["received"] == 7 and reporter.data["stage"] == "uploading"


def test_a_fully_resumed_chunk_sends_no_frame(tmp_path) -> None:
    stream = ChunkStream([(0, bytes(6)), (2, bytes(6))])
    channel = FakeChannel()
    asyncio.run(trainer.send_records(_ctx(tmp_path), channel, stream, 3, {"num_samples": 4}, 4,
                                     Reporter(None, "edge1", "trainer")))
    assert [e.type for e, _ in channel.sent] == [msg.RECORDS_DONE]


def test_a_record_is_the_packed_bits_then_the_label_little_endian(tmp_path) -> None:
    labels = np.array([1, 258, 65535], dtype=np.int64)
    stream = trainer._RecordStream(torch.nn.Identity(), np.zeros((3, 1, 2, 2), np.float32), labels, math.inf,
                                   chunk_records=2, label_bytes=2, noise=CoupledNoise(b"k" * 32, 2))
    packed = [np.array([[0xAA], [0x55]], np.uint8), np.array([[0xFF]], np.uint8)]
    stream._batches = iter([(0, packed[0]), (2, packed[1])])
    chunks = list(stream)
    assert chunks == [(0, bytes([0xAA, 1, 0, 0x55, 2, 1])), (2, bytes([0xFF, 0xFF, 0xFF]))]
    assert stream.digest.hexdigest() == hashlib.sha256(bytes([0xAA, 1, 0, 0x55, 2, 1, 0xFF, 0xFF, 0xFF])).hexdigest()
    assert stream.compute_s >= 0.0


def _secrets(tmp_path: Path, epsilon: float, label_epsilon: float | None) -> trainer.EdgeSecrets:
    privacy = EdgePrivacy(tmp_path, "j", "edge1", epsilon, label_epsilon, None)
    return trainer.EdgeSecrets(privacy, seed=7, seed_is_new=True, data="d" * 64)


def test_the_edge_applies_the_stricter_of_its_own_and_the_jobs_epsilons(tmp_path) -> None:
    assert trainer.effective_epsilons(_secrets(tmp_path, 1.0, None), _task(epsilon="2.0")) == (1.0, None)
    assert trainer.effective_epsilons(_secrets(tmp_path, 3.0, None), _task(epsilon="2.0", label_epsilon="0.5")) \
        == (2.0, 0.5)
    assert trainer.effective_epsilons(_secrets(tmp_path, 3.0, 0.25), _task(epsilon="inf")) == (3.0, 0.25)


def test_edge_secrets_draw_the_seed_once_and_reuse_it(tmp_path) -> None:
    privacy = EdgePrivacy(tmp_path, "j", "edge1", 1.0, None, None)
    first, again = trainer.edge_secrets(privacy, "data"), trainer.edge_secrets(privacy, "data")
    assert (first.seed_is_new, again.seed_is_new) == (True, False)
    assert first.seed == again.seed and first.data == "data"


def test_an_edge_model_that_cannot_be_built_or_cut_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        trainer._edge_model(_task(model="nosuchnet"), memoryview(b""))
    assert str(info.value) == ("model 'nosuchnet': unknown model 'nosuchnet': use one of ['lenet5'] or an import "
                               "path 'package.module:factory'")
    with pytest.raises(ConfigurationError) as info:
        trainer._edge_model(_task(cut_layer=99), memoryview(b""))
    assert str(info.value) == ("cut_layer 99 is out of range for a model with 12 modules: use 1..11 (index of the "
                               "first cloud module) so that both parts are non-empty")


def test_an_ack_to_hello_means_nothing_is_left_to_send(tmp_path) -> None:
    ack = Envelope(type=msg.ACK, job="j", worker="aggregator", meta={"received": 5, "complete": True})
    channel = FakeChannel([ack])
    ctx = _ctx(tmp_path, DATASET_NAME="mnist-1")
    figures = asyncio.run(trainer._session(ctx, _secrets(tmp_path, 1.0, None), channel, np.zeros((5, 1)),
                                           np.zeros(5), Reporter(None, "edge1", "trainer"), {}))
    assert figures == {"samples": 5, "compute_s": 0.0, "resumed_from": 5}
    hello, body = channel.sent[0]
    assert (hello.type, hello.meta, body) == (msg.HELLO, {"role": "trainer", "num_samples": 5,
                                                          "dataset": "mnist-1"}, b"")


def _run(tmp_path: Path, monkeypatch, channels: list[FakeChannel]) -> Any:
    pending = list(channels)

    async def connect(url: str, deadline_s: float, security: Any) -> FakeChannel:
        assert url == "ws://127.0.0.1:7999"
        if not pending:
            raise TransportError("cannot reach ws://127.0.0.1:7999")
        return pending.pop(0)

    monkeypatch.setattr(trainer, "connect_with_retry", connect)
    return asyncio.run(trainer._run(_ctx(tmp_path), _secrets(tmp_path, 1.0, None), np.zeros((2, 1)), np.zeros(2),
                                    Reporter(None, "edge1", "trainer")))


def test_sessions_that_make_no_progress_end_the_job_after_the_fifth(tmp_path, monkeypatch) -> None:
    channels = [FakeChannel([TransportError("connection reset")]) for _ in range(6)]
    with pytest.raises(JobFailure) as info:
        _run(tmp_path, monkeypatch, channels)
    assert str(info.value) == ("aggregator ws://127.0.0.1:7999: connection reset "
                               "(5 sessions in a row made no progress)")
    assert [c.closed for c in channels] == [True] * 5 + [False]


def test_a_reconnect_resumes_and_the_figures_add_up_over_sessions(tmp_path, monkeypatch) -> None:
    ack = Envelope(type=msg.ACK, job="j", worker="aggregator", meta={"received": 2, "complete": True})
    figures = _run(tmp_path, monkeypatch, [FakeChannel([TransportError("reset")]), FakeChannel([ack])])
    hello = 10 + 0  # FakeChannel counts 10 bytes per frame plus the body
    assert figures == {"samples": 2, "compute_s": 0.0, "resumed_from": 2, "bytes_up": 2 * hello, "bytes_down": 0,
                       "sessions": 2}


def test_protocol_and_connect_errors_end_the_job_with_one_line(tmp_path, monkeypatch) -> None:
    error = Envelope(type=msg.ERROR, job="j", worker="aggregator", meta={"reason": "unknown worker edge1"})
    with pytest.raises(JobFailure) as info:
        _run(tmp_path, monkeypatch, [FakeChannel([error])])
    assert str(info.value) == "aggregator ws://127.0.0.1:7999: peer reported an error: unknown worker edge1"
    with pytest.raises(JobFailure) as info:
        _run(tmp_path, monkeypatch, [])
    assert str(info.value) == "cannot reach ws://127.0.0.1:7999"
