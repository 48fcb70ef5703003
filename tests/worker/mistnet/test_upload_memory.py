"""The aggregator's memory does not grow with the number of edges uploading at once (issue 20, point 5).

The real upload server (``UploadServer.listen``, the aggregator's websocket server) is traced with tracemalloc
in this process; the edges are real websocket clients in a child process (so their buffers are not counted),
all connected at once before any of them sends its records in full-size RECORDS frames. Before the fix each
connection held a 2 MiB read buffer (picows' default, grown further by fast reads) and a queue of copied frames:
over 2 MiB per edge. Now a connection's read buffer holds one records frame and one read, and records go from
it straight to the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import tracemalloc

import numpy as np

from fedmist.transport import ws
from fedmist.transport.security import Security
from fedmist.wire import messages as msg
from fedmist.wire.arrays import encode_arrays
from fedmist.wire.envelope import Envelope
from fedmist.worker.mistnet.upload_server import UploadPlan, UploadServer

TOKEN = "memory-token"
FEATURE_BYTES = 148  # a LeNet-5 cut's packed bits are about this size
RECORD = FEATURE_BYTES + 1
PER_FRAME = msg.RECORDS_FRAME_BYTES // RECORD  # what a real edge puts in one frame
FRAMES = 6  # each edge's upload: 6 full frames (~380 KiB)
#: Generous bound on what one more concurrent edge may add to the server's traced peak: the read buffer
#: (~94 KiB) and the session's objects come to about 110 KiB; before the fix it was over 2 MiB.
PER_EDGE_BYTES = 256 * 1024


async def _edges(url: str, count: int) -> None:
    """``count`` edges: all connect and get their TASK, then all upload at once."""
    rows = np.random.default_rng(0).integers(0, 256, (PER_FRAME * FRAMES, RECORD), dtype=np.uint8)
    rows[:, -1] %= 10
    data = rows.tobytes()
    meta = {"num_samples": len(rows), "feature_bytes": FEATURE_BYTES, "label_bytes": 1,
            "feature_shape": [8 * FEATURE_BYTES], "epsilon": "2.0"}
    joined, go = [0], asyncio.Event()

    async def edge(worker: str) -> None:
        channel = await ws.connect(url, security=Security(token=TOKEN, job="job", worker=worker))
        await channel.send(Envelope(type=msg.HELLO, job="job", worker=worker,
                                    meta={"role": "trainer", "num_samples": len(rows)}))
        await channel.recv(30)
        joined[0] += 1
        if joined[0] == count:
            go.set()
        await asyncio.wait_for(go.wait(), 60)
        for start in range(0, len(rows), PER_FRAME):
            await channel.send(Envelope(type=msg.RECORDS, job="job", worker=worker, kind="records", size=len(data),
                                        offset=start * RECORD, meta=meta), data[start * RECORD:(start + PER_FRAME) * RECORD])
        await channel.send(Envelope(type=msg.RECORDS_DONE, job="job", worker=worker, meta={
            "num_samples": len(rows), "sha256": hashlib.sha256(data).hexdigest(), "compute_s": 0.1,
            "bytes_up": len(data)}))
        ack, _ = await channel.recv(60)
        assert ack.type == msg.ACK, ack
        await channel.close()

    await asyncio.gather(*(edge(f"edge{i}") for i in range(count)))


async def _serve(tmp_path, count: int) -> tuple[int, int]:
    """Run one upload of ``count`` concurrent edges; (traced peak above the start in bytes, most open sessions)."""
    task = msg.TaskMeta(algorithm="mistnet", model="lenet5", cut_layer=3, epsilon="2.0", batch_size=32,
                        num_classes=10, chunk_records=1000)
    plan = UploadPlan(job="job", task=task, edge_weights=encode_arrays({"w": np.ones((4, 4), np.float32)}),
                      participants=count, token=TOKEN, store_root=tmp_path / f"n{count}", hello_timeout=30,
                      idle_timeout=60)
    server = UploadServer(plan)
    most = [0]

    def seen() -> None:
        most[0] = max(most[0], len(server._sessions))

    server.on_change = seen
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        listener = await server.listen("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
        edges = await asyncio.create_subprocess_exec(sys.executable, __file__, url, str(count),
                                                     stderr=subprocess.PIPE)
        try:
            assert await server.wait(90, count) == sorted(f"edge{i}" for i in range(count))
        finally:
            _, err = await asyncio.wait_for(edges.communicate(), 60)
            listener.close()
            await listener.wait_closed()
        assert edges.returncode == 0, err.decode()[-2000:]
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    return peak, most[0]


def test_server_memory_per_concurrent_edge_is_small(tmp_path):
    few, many = 2, 40
    peak_few, open_few = asyncio.run(_serve(tmp_path, few))
    peak_many, open_many = asyncio.run(_serve(tmp_path, many))
    assert (open_few, open_many) == (few, many)  # every edge's session was open at once
    per_edge = (peak_many - peak_few) / (many - few)
    assert per_edge < PER_EDGE_BYTES, (
        f"{many} concurrent edges peaked at {peak_many / 2**20:.1f} MiB traced, {few} at {peak_few / 2**20:.1f} "
        f"MiB: {per_edge / 1024:.0f} KiB per extra edge (bound {PER_EDGE_BYTES // 1024} KiB)")


if __name__ == "__main__":  # the edges' process
    asyncio.run(_edges(sys.argv[1], int(sys.argv[2])))
