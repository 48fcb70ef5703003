"""The aggregator learns each edge's epsilon from its records (issue 17): a stricter edge is recorded with its own
value, persisted for a restart; a looser, malformed or changing one is refused with a logged reason."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import numpy as np

from fedmist.transport import ws
from fedmist.transport.base import TransportError
from fedmist.transport.security import Security
from fedmist.wire import messages as msg
from fedmist.wire.arrays import encode_arrays
from fedmist.wire.envelope import Envelope
from fedmist.worker.mistnet.feature_store import open_complete_stores, read_manifest
from fedmist.worker.mistnet.upload_server import UploadPlan, UploadServer

TOKEN = "tok"
ROWS = np.arange(8 * 3, dtype=np.uint8).reshape(8, 3)  # 8 records: 2 feature bytes + 1 label byte
ROWS[:, 2] %= 10  # labels within the task's 10 classes (the aggregator refuses others)


def _plan(tmp_path, epsilon: str = "2.0", label_epsilon: str = "", participants: int = 1) -> UploadPlan:
    task = msg.TaskMeta(algorithm="mistnet", model="lenet5", cut_layer=3, epsilon=epsilon, label_epsilon=label_epsilon,
                        batch_size=32, num_classes=10, chunk_records=4)
    return UploadPlan(job="job", task=task, edge_weights=encode_arrays({"w": np.ones(2, np.float32)}),
                      participants=participants, token=TOKEN, store_root=tmp_path, hello_timeout=2, idle_timeout=2)


async def _serving(plan: UploadPlan, body):
    server = UploadServer(plan)
    server.adopt_stored()
    listener = await ws.serve(server.handle, "127.0.0.1", 0)
    try:
        return await body(server, f"ws://127.0.0.1:{listener.sockets[0].getsockname()[1]}")
    finally:
        listener.close()
        await listener.wait_closed()


def _meta(epsilon: str, label_epsilon: str = "") -> dict:
    return {"num_samples": 8, "feature_bytes": 2, "label_bytes": 1, "feature_shape": [16], "epsilon": epsilon,
            "label_epsilon": label_epsilon}


async def _send(url: str, worker: str, meta: dict, chunks: range, done: bool) -> Envelope | None:
    """One session: HELLO, the records chunks ``chunks`` (4 records each), then RECORDS_DONE when ``done``; the
    aggregator's reply (ACK or ERROR), or None when the session ends without one."""
    channel = await ws.connect(url, security=Security(token=TOKEN, job="job", worker=worker))
    await channel.send(Envelope(type=msg.HELLO, job="job", worker=worker, meta={"role": "trainer", "num_samples": 8}))
    task_env, _ = await channel.recv(5)
    assert task_env.type == msg.TASK
    try:
        for index in chunks:
            await channel.send(Envelope(type=msg.RECORDS, job="job", worker=worker, kind="records", size=ROWS.nbytes,
                                        offset=index * 12, meta=meta), ROWS[index * 4:index * 4 + 4].tobytes())
        if done:
            await channel.send(Envelope(type=msg.RECORDS_DONE, job="job", worker=worker, meta={
                "num_samples": 8, "sha256": hashlib.sha256(ROWS.tobytes()).hexdigest(), "compute_s": 0.0,
                "bytes_up": ROWS.nbytes}))
        reply, _ = await channel.recv(3)
        return reply
    except TransportError:
        return None
    finally:
        await channel.close()


def test_a_stricter_edge_is_recorded_with_its_own_epsilon_and_kept_across_a_restart(tmp_path):
    async def body(server, url):
        reply = await _send(url, "edge1", _meta("1.0", "3"), range(2), done=True)
        return reply, dict(vars(server.edges["edge1"]))

    reply, seen = asyncio.run(_serving(_plan(tmp_path), body))
    assert reply.type == msg.ACK and msg.parse_meta(reply, msg.ACK).complete
    assert (seen["epsilon"], seen["label_epsilon"]) == ("1.0", "3.0")
    manifest = read_manifest(tmp_path / "edge1")
    assert (manifest.epsilon, manifest.label_epsilon) == ("1.0", "3.0")
    source = open_complete_stores(tmp_path)
    assert source.epsilons == ("1.0",) and source.label_epsilons == ("3.0",) and source.workers == ("edge1",)
    restarted = UploadServer(_plan(tmp_path))  # a restarted aggregator adopts the upload with its epsilon
    assert restarted.adopt_stored() == ["edge1"]
    assert (restarted.edges["edge1"].epsilon, restarted.edges["edge1"].label_epsilon) == ("1.0", "3.0")


def test_a_looser_edge_is_refused_with_a_logged_reason(tmp_path, caplog):
    async def body(server, url):
        replies = [await _send(url, "edge1", _meta("4"), range(1), done=False),
                   await _send(url, "edge1", _meta("inf"), range(1), done=False)]
        return replies, server.complete

    with caplog.at_level(logging.WARNING, logger="fedmist.aggregator"):
        replies, complete = asyncio.run(_serving(_plan(tmp_path), body))
    assert [r.meta["reason"] for r in replies] == [
        "epsilon 4 is looser than the job's floor 2.0; an edge applies the stricter of its own epsilon and the job's",
        "epsilon inf is looser than the job's floor 2.0; an edge applies the stricter of its own epsilon and the job's"]
    assert complete == []
    assert "(worker edge1): epsilon 4 is looser than the job's floor 2.0" in caplog.text
    assert read_manifest(tmp_path / "edge1") is None  # nothing of it was stored


def test_label_noise_looser_than_the_floor_and_malformed_values_are_refused(tmp_path):
    async def body(server, url):
        return [(await _send(url, "edge1", meta, range(1), done=False)).meta["reason"] for meta in (
            _meta("2", ""), _meta("2", "5"), _meta("abc", "1"), _meta("-1", "1"), _meta("nan", "1"),
            _meta("2", "0"))]

    assert asyncio.run(_serving(_plan(tmp_path, label_epsilon="1.0"), body)) == [
        "labels sent in clear, looser than the job's label_epsilon floor 1.0",
        "label_epsilon 5 is looser than the job's floor 1.0; an edge applies the stricter of its own label_epsilon "
        "and the job's",
        "epsilon 'abc' must be a positive number or 'inf'",
        "epsilon '-1' must be a positive number or 'inf'",
        "epsilon 'nan' must be a positive number or 'inf'",
        "label_epsilon '0' must be a positive number or 'inf'",
    ]


def test_an_edge_changing_its_epsilon_between_sessions_is_refused_even_by_a_restarted_aggregator(tmp_path):
    async def first(server, url):
        return await _send(url, "edge1", _meta("1.5"), range(1), done=False)  # 4 of 8 records, then gone

    async def second(server, url):
        changed = await _send(url, "edge1", _meta("2"), range(1, 2), done=True)
        same = await _send(url, "edge1", _meta("1.5"), range(1, 2), done=True)
        return changed, same

    assert asyncio.run(_serving(_plan(tmp_path), first)) is None
    assert read_manifest(tmp_path / "edge1").received == 4
    changed, same = asyncio.run(_serving(_plan(tmp_path), second))  # a fresh aggregator, the stored manifest
    assert changed.meta["reason"] == ("worker 'edge1' changed its privacy settings during its upload: epsilon 1.5, "
                                      "label_epsilon clear before, epsilon 2.0, label_epsilon clear now")
    assert same.type == msg.ACK and msg.parse_meta(same, msg.ACK).complete
    assert read_manifest(tmp_path / "edge1").epsilon == "1.5"


def test_one_session_cannot_switch_epsilon_between_chunks(tmp_path):
    async def body(server, url):
        channel = await ws.connect(url, security=Security(token=TOKEN, job="job", worker="edge1"))
        await channel.send(Envelope(type=msg.HELLO, job="job", worker="edge1", meta={"role": "trainer", "num_samples": 8}))
        await channel.recv(5)
        for index, eps in enumerate(("1.0", "0.5")):
            await channel.send(Envelope(type=msg.RECORDS, job="job", worker="edge1", kind="records", size=ROWS.nbytes,
                                        offset=index * 12, meta=_meta(eps)), ROWS[index * 4:index * 4 + 4].tobytes())
        reply, _ = await channel.recv(3)
        await channel.close()
        return reply.meta["reason"]

    assert asyncio.run(_serving(_plan(tmp_path), body)) == "records epsilon changed during the upload"
