"""The aggregator's upload server over a real websocket on 127.0.0.1: hostile input is refused, never fatal."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import struct
import time

import numpy as np
import pytest

from fedmist.transport import ws
from fedmist.transport.base import AuthenticationError, TransportError
from fedmist.transport.security import Security
from fedmist.wire import messages as msg
from fedmist.wire.arrays import decode_arrays, encode_arrays
from fedmist.wire.envelope import Envelope, ProtocolError
from fedmist.worker.mistnet.feature_store import open_complete_stores
from fedmist.worker.mistnet.upload_server import UploadPlan, UploadServer

TOKEN = "s3cret-token"


def _rows(n: int) -> np.ndarray:
    """``n`` records of 2 feature bytes and a label in [0, 10) (the task's classes)."""
    rows = np.arange(n * 3, dtype=np.uint8).reshape(n, 3)
    rows[:, 2] %= 10
    return rows


def _plan(tmp_path, participants: int = 1) -> UploadPlan:
    task = msg.TaskMeta(algorithm="mistnet", model="lenet5", cut_layer=3, epsilon="2.0", batch_size=32,
                        num_classes=10, chunk_records=4)
    return UploadPlan(job="job", task=task, edge_weights=encode_arrays({"0.weight": np.ones((2, 2), np.float32)}),
                      participants=participants, token=TOKEN, store_root=tmp_path, hello_timeout=2, idle_timeout=2)


async def _with_server(plan, body):
    server = UploadServer(plan)
    listener = await ws.serve(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        return await body(server, f"ws://127.0.0.1:{port}")
    finally:
        listener.close()
        await listener.wait_closed()


def _hello(worker: str, n: int = 6) -> Envelope:
    return Envelope(type=msg.HELLO, job="job", worker=worker, meta={"role": "trainer", "num_samples": n})


def _as(worker: str, token: str = TOKEN, job: str = "job") -> Security:
    """A client's side of the handshake: the token it holds and who it says it is (plain ws, no TLS)."""
    return Security(token=token, job=job, worker=worker)


async def _join(url: str, worker: str, n: int) -> tuple[ws.WsChannel, Envelope, memoryview]:
    """Connect (the handshake proves the job token), say HELLO with ``n`` samples; the channel and the TASK."""
    channel = await ws.connect(url, security=_as(worker))
    await channel.send(_hello(worker, n=n))
    task_env, body = await channel.recv(5)
    return channel, task_env, body


async def _upload(url: str, worker: str, rows: np.ndarray) -> msg.AckMeta:
    channel, task_env, body = await _join(url, worker, len(rows))
    task = msg.parse_meta(task_env, msg.TASK)
    assert decode_arrays(body)["0.weight"].sum() == 4 and task.cut_layer == 3
    meta = {"num_samples": len(rows), "feature_bytes": rows.shape[1] - 1, "label_bytes": 1, "feature_shape": [8 * (rows.shape[1] - 1)], "epsilon": "2.0"}
    data = rows.tobytes()
    for start in range(0, len(rows), 4):
        chunk = rows[start:start + 4].tobytes()
        await channel.send(Envelope(type=msg.RECORDS, job="job", worker=worker, kind="records", size=len(data),
                                    offset=start * rows.shape[1], meta=meta), chunk)
    await channel.send(Envelope(type=msg.RECORDS_DONE, job="job", worker=worker, meta={
        "num_samples": len(rows), "sha256": hashlib.sha256(data).hexdigest(), "compute_s": 0.1, "bytes_up": len(data)}))
    ack_env, _ = await channel.recv(5)
    await channel.close()
    return msg.parse_meta(ack_env, msg.ACK)


async def _rejected(url: str, frames: list[Envelope | bytes], worker: str = "edge1", token: str = TOKEN,
                    job: str = "job") -> str:
    """The aggregator's refusal: of the handshake (``refused: REASON``), or of the frames sent after it."""
    try:
        channel = await ws.connect(url, security=_as(worker, token, job))
    except AuthenticationError as exc:
        return "refused: " + str(exc).split(": the aggregator refused this worker: ", 1)[1]
    for frame in frames:
        if isinstance(frame, bytes):
            await channel.send_raw(frame)  # raw, possibly malformed, bytes straight onto the socket
        else:
            await channel.send(frame)
    try:
        reply, _ = await channel.recv(5)
    except TransportError as exc:
        return f"closed: {exc}"
    finally:
        await channel.close()
    assert reply.type == msg.ERROR
    return reply.meta["reason"]


def test_bad_peers_are_refused_and_a_good_edge_still_uploads(tmp_path):
    rows = _rows(6)

    async def body(server, url):
        assert await _rejected(url, [], token="wrong") == "refused: worker 'edge1' presented a wrong token"
        assert await _rejected(url, [], job="other") == "refused: worker 'edge1' belongs to job 'other', not 'job'"
        assert "header length" in await _rejected(url, [b"\xff\xff\xff\xffgarbage"])
        assert "unexpected message 'records'" in await _rejected(
            url, [Envelope(type=msg.RECORDS, job="job", worker="x")], worker="x")
        assert "meta.num_samples" in await _rejected(
            url, [Envelope(type=msg.HELLO, job="job", worker="x", meta={"role": "trainer", "num_samples": -1})],
            worker="x")
        assert "belongs to job 'other'" in await _rejected(
            url, [Envelope(type=msg.HELLO, job="other", worker="edge1", meta={"role": "trainer", "num_samples": 6})])
        assert await _rejected(url, [_hello("edge2")]) == (
            "HELLO names worker 'edge2', but the handshake authenticated 'edge1'")
        ack = await _upload(url, "edge1", rows)
        assert ack.complete and ack.received == 6
        assert server.complete == ["edge1"]
        assert await _rejected(url, [_hello("edge9")], worker="edge9") == (
            "worker 'edge9' is not expected: all 1 participants known")

    asyncio.run(_with_server(_plan(tmp_path), body))
    features, labels = open_complete_stores(tmp_path).batch(np.arange(6))
    assert np.array_equal(features, rows[:, :2]) and labels.tolist() == rows[:, 2].tolist()


def test_a_reconnecting_edge_takes_over_its_half_open_connection_and_resumes(tmp_path):
    """The old connection may be half-open after a network fault: the authenticated newcomer replaces it, after
    the old session's records are checkpointed, and is told to resume where they end. An impostor without the
    token cannot kick the edge out."""
    rows = _rows(8)
    meta = {"num_samples": 8, "feature_bytes": 2, "label_bytes": 1, "feature_shape": [16], "epsilon": "2.0"}

    async def body(server, url):
        first, _, _ = await _join(url, "edge1", 8)
        await first.send(Envelope(type=msg.RECORDS, job="job", worker="edge1", kind="records", size=24, offset=0,
                                  meta=meta), rows[:4].tobytes())
        for _ in range(100):
            if server.edges["edge1"].received == 4:
                break
            await asyncio.sleep(0.01)
        impostor = await _rejected(url, [_hello("edge1", n=8)], token="wrong")
        first._listener.transport.underlying_transport.pause_reading()  # half-open: it no longer answers pings
        second, task_env, _ = await _join(url, "edge1", 8)  # `first` is never closed by its owner
        task = msg.parse_meta(task_env, msg.TASK)
        await second.send(Envelope(type=msg.RECORDS, job="job", worker="edge1", kind="records", size=24, offset=12,
                                   meta=meta), rows[4:].tobytes())
        await second.send(Envelope(type=msg.RECORDS_DONE, job="job", worker="edge1", meta={
            "num_samples": 8, "sha256": hashlib.sha256(rows.tobytes()).hexdigest(), "compute_s": 0.1,
            "bytes_up": 24}))
        ack = msg.parse_meta((await second.recv(5))[0], msg.ACK)
        await second.close()
        await first.close()
        return impostor, task, ack, server.edges["edge1"]

    impostor, task, ack, edge = asyncio.run(_with_server(_plan(tmp_path, participants=2), body))
    assert impostor == "refused: worker 'edge1' presented a wrong token"
    assert task.resume_records == 4 and ack.complete and ack.received == 8
    assert edge.connections == 2 and edge.phase == "Uploaded"
    assert edge.bytes_up > 24  # both sessions' bytes count, not only the last one's


def test_a_second_connection_claiming_a_live_edge_is_refused_and_the_edge_goes_on(tmp_path):
    """Two edges given one name (or someone else holding the token): while the first connection still answers
    pings, the newcomer is refused and the first edge finishes its upload undisturbed."""
    rows = _rows(8)
    meta = {"num_samples": 8, "feature_bytes": 2, "label_bytes": 1, "feature_shape": [16], "epsilon": "2.0"}

    async def body(server, url):
        first, _, _ = await _join(url, "edge1", 8)
        refused = await _rejected(url, [_hello("edge1", n=8)])
        await first.send(Envelope(type=msg.RECORDS, job="job", worker="edge1", kind="records", size=24, offset=0,
                                  meta=meta), rows.tobytes())
        await first.send(Envelope(type=msg.RECORDS_DONE, job="job", worker="edge1", meta={
            "num_samples": 8, "sha256": hashlib.sha256(rows.tobytes()).hexdigest(), "compute_s": 0.1,
            "bytes_up": 24}))
        ack = msg.parse_meta((await first.recv(5))[0], msg.ACK)
        peer = f"127.0.0.1:{first.local_address[1]}"
        await first.close()
        return refused, ack, peer, server.edges["edge1"]

    refused, ack, peer, edge = asyncio.run(_with_server(_plan(tmp_path, participants=2), body))
    assert refused == f"worker 'edge1' is already connected (from {peer}, which still answers)"
    assert ack.complete and ack.received == 8 and edge.connections == 1 and edge.phase == "Uploaded"


def test_duplicate_records_chunks_are_idempotent(tmp_path):
    """A chunk sent again (a retry after a lost ack, an overlap after a resume) rewrites the same bytes: the
    upload completes with the sender's hash and the same record count."""
    rows = _rows(8)
    meta = {"num_samples": 8, "feature_bytes": 2, "label_bytes": 1, "feature_shape": [16], "epsilon": "2.0"}

    async def body(server, url):
        channel, _, _ = await _join(url, "edge1", 8)
        for offset, part in ((0, rows[:4]), (0, rows[:4]), (6, rows[2:6]), (12, rows[4:]), (12, rows[4:])):
            await channel.send(Envelope(type=msg.RECORDS, job="job", worker="edge1", kind="records", size=24,
                                        offset=offset, meta=meta), part.tobytes())
        await channel.send(Envelope(type=msg.RECORDS_DONE, job="job", worker="edge1", meta={
            "num_samples": 8, "sha256": hashlib.sha256(rows.tobytes()).hexdigest(), "compute_s": 0.1,
            "bytes_up": 24}))
        ack = msg.parse_meta((await channel.recv(5))[0], msg.ACK)
        await channel.close()
        return ack

    ack = asyncio.run(_with_server(_plan(tmp_path), body))
    assert ack.complete and ack.received == 8
    features, labels = open_complete_stores(tmp_path).batch(np.arange(8))
    assert np.array_equal(features, rows[:, :2]) and labels.tolist() == rows[:, 2].tolist()


def test_wrong_hash_at_the_end_is_refused_and_nothing_is_marked_complete(tmp_path):
    rows = np.zeros((4, 3), dtype=np.uint8)

    async def body(server, url):
        channel, _, _ = await _join(url, "edge1", 4)
        meta = {"num_samples": 4, "feature_bytes": 2, "label_bytes": 1, "feature_shape": [16], "epsilon": "2.0"}
        await channel.send(Envelope(type=msg.RECORDS, job="job", worker="edge1", kind="records", size=12, meta=meta),
                           rows.tobytes())
        await channel.send(Envelope(type=msg.RECORDS_DONE, job="job", worker="edge1", meta={
            "num_samples": 4, "sha256": "0" * 64, "compute_s": 0.0, "bytes_up": 12}))
        reply, _ = await channel.recv(5)
        await channel.close()
        return reply, server.complete

    reply, complete = asyncio.run(_with_server(_plan(tmp_path), body))
    assert reply.type == msg.ERROR and "sha256 does not match" in reply.meta["reason"] and complete == []
    with pytest.raises(ProtocolError, match="peer reported an error"):
        msg.parse_meta(reply, msg.ACK)


def test_a_restarted_aggregator_adopts_stored_uploads_of_the_same_task_only(tmp_path):
    rows = _rows(6)

    async def body(server, url):
        assert (await _upload(url, "edge1", rows)).complete

    asyncio.run(_with_server(_plan(tmp_path), body))
    assert UploadServer(_plan(tmp_path)).adopt_stored() == ["edge1"]  # same task: not waited for again
    other = _plan(tmp_path)
    other.task = other.task.model_copy(update={"epsilon": "1.0"})  # features made at epsilon 2 do not fit
    assert UploadServer(other).adopt_stored() == []


def test_a_slow_sender_is_cut_off_at_the_hello_deadline_and_logged(tmp_path, caplog):
    """Slowloris: a client that completes the websocket handshake, then trickles one frame a byte at a time,
    never gets to hold the connection: the aggregator gives up at its hello deadline, logs the peer and why,
    and closes the socket while the frame is still unfinished."""
    async def body(server, url):
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        response = await reader.readuntil(b"\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 101"), response
        address = "127.0.0.1:%d" % writer.get_extra_info("sockname")[1]
        writer.write(bytes([0x82, 0x80 | 127]) + struct.pack(">Q", 1 << 20) + os.urandom(4))  # a 1 MiB frame...
        started, sent, closed = time.monotonic(), 0, False
        while time.monotonic() - started < 15:
            writer.write(b"x")  # ...of which one byte arrives every 0.1 s
            sent += 1
            try:
                if await asyncio.wait_for(reader.read(1024), 0.1) == b"" or reader.at_eof():
                    closed = True
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                closed = True
                break
        writer.close()
        return address, closed, time.monotonic() - started, sent

    with caplog.at_level(logging.WARNING, logger="fedmist.aggregator"):
        address, closed, seconds, sent = asyncio.run(_with_server(_plan(tmp_path), body))
    # cut off after the 2 s hello deadline plus the bounded close wait (5 s), long before the 1 MiB frame could end
    assert closed and seconds < 12 and sent < 200
    assert f"lost {address} (worker ?): {address}: handshake not finished within 2 s" in caplog.text


def test_an_edge_with_labels_outside_the_task_is_refused_and_the_job_goes_on_with_the_others(tmp_path):
    """Two edges: ``bad`` sends a label >= num_classes in its first chunk. It gets an ERROR naming the record,
    nothing of it is stored, it cannot come back, and the upload phase ends with the good edge's records."""
    bad_rows = _rows(6)
    bad_rows[3, 2] = 11
    good_rows = _rows(6)
    meta = {"num_samples": 6, "feature_bytes": 2, "label_bytes": 1, "feature_shape": [16], "epsilon": "2.0"}

    async def body(server, url):
        channel, _, _ = await _join(url, "bad", 6)
        await channel.send(Envelope(type=msg.RECORDS, job="job", worker="bad", kind="records", size=18, offset=0,
                                    meta=meta), bad_rows[:4].tobytes())
        reply, _ = await channel.recv(5)
        await channel.close()
        again = await _rejected(url, [_hello("bad")], worker="bad")
        ack = await _upload(url, "good", good_rows)
        done = await server.wait(5, min_complete=1)
        return reply.meta["reason"], again, ack, done, server.refused, server.edges["bad"].phase

    reason, again, ack, done, refused, phase = asyncio.run(_with_server(_plan(tmp_path, participants=2), body))
    why = "record 3 has label 11, outside [0, 10) (1 such records in this chunk)"
    assert reason == f"records refused: {why}"
    assert again == f"worker 'bad' was refused earlier in this job: {why}"
    assert ack.complete and done == ["good"] and refused == {"bad": why} and phase == "Refused"
    features, labels = open_complete_stores(tmp_path).batch(np.arange(6))
    assert labels.tolist() == good_rows[:, 2].tolist()
    from fedmist.worker.mistnet.feature_store import read_manifest

    stored = read_manifest(tmp_path / "bad")
    assert stored is not None and stored.received == 0 and not stored.complete
    assert not (tmp_path / "bad" / "records.u8").read_bytes().strip(b"\0")  # not one byte of it written


def test_refused_edges_below_min_clients_fail_the_upload_phase_with_the_reason(tmp_path):
    from fedmist.worker.errors import JobFailure

    rows = _rows(6)
    rows[0, 2] = 200

    async def body(server, url):
        with pytest.raises(ProtocolError, match="records refused"):
            await _upload(url, "bad", rows)
        with pytest.raises(JobFailure) as failed:
            await server.wait(5, min_complete=1)
        return str(failed.value)

    message = asyncio.run(_with_server(_plan(tmp_path), body))
    assert message == ("only 0 of 1 edges uploaded (need 1); refused bad: record 0 has label 200, outside [0, 10) "
                       "(1 such records in this chunk)")


@pytest.mark.parametrize(("layout", "why"), [
    ({"feature_shape": [24], "feature_bytes": 3}, "records feature_shape [24], the task's edge part produces [16]"),
    ({"label_bytes": 2}, "records label_bytes 2, the task's 10 classes take 1"),
    ({"feature_bytes": 5}, "records feature_bytes 5, feature_shape [16] takes 2"),
])
def test_a_records_layout_other_than_the_tasks_is_refused_before_anything_is_stored(tmp_path, layout, why):
    plan = _plan(tmp_path)
    plan.feature_shape = (16,)
    meta = {"num_samples": 6, "feature_bytes": 2, "label_bytes": 1, "feature_shape": [16], "epsilon": "2.0", **layout}

    async def body(server, url):
        channel, _, _ = await _join(url, "edge1", 6)
        size = 6 * (meta["feature_bytes"] + meta["label_bytes"])
        await channel.send(Envelope(type=msg.RECORDS, job="job", worker="edge1", kind="records", size=size,
                                    offset=0, meta=meta), bytes(size))
        reply, _ = await channel.recv(5)
        await channel.close()
        return reply.meta["reason"], server.refused

    reason, refused = asyncio.run(_with_server(plan, body))
    assert reason == f"records refused: {why}" and refused == {"edge1": why}
    assert not (tmp_path / "edge1").exists()
