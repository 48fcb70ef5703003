"""A MistNet job whose workers run as containers do (``python -m fedmist worker aggregate|train`` from the env
contract, real processes on real sockets), joined by an authenticated peer -- it holds the job's token --
that uploads records whose labels lie outside the task's classes. The aggregator refuses that edge (a log line
naming it, an ERROR reply, the refusal in its status report) and the job finishes on the honest edge's records,
with no crash and so no restart loop of the cloud.

Why not ``fedmist run``: a manifest cannot expect more participants than it launches, and a launched trainer
would run fedmist's own upload, which checks labels before sending (``worker.errors.check_labels``); the
hostile peer here is a small client speaking the protocol, the simplest honest stand-in for a modified edge."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import REPO

from fedmist.transport import ws
from fedmist.wire import messages as msg
from fedmist.wire.envelope import Envelope

pytestmark = pytest.mark.e2e

JOB = "mnist-mistnet"
TOKEN = "the-job-token-every-edge-holds-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(role: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "PYTHONPATH", "LANG", "TMPDIR")}
    return subprocess.Popen([sys.executable, "-m", "fedmist", "worker", role], cwd=REPO, env={**base, **env},
                            stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


async def _hostile_upload(url: str) -> str:
    """Speak the protocol as edge 'rogue' with the job's token: HELLO, take the TASK, then send 4 records of
    the task's layout whose third label is 12 (the task has 10 classes). Returns the aggregator's reply."""
    from fedmist.transport.security import Security

    channel = await ws.connect(url, security=Security(TOKEN, job=JOB, worker="rogue"), timeout=10)
    try:
        await channel.send(Envelope(type=msg.HELLO, job=JOB, worker="rogue",
                                    meta={"role": "trainer", "num_samples": 4}))
        task = msg.parse_meta((await channel.recv(30))[0], msg.TASK)
        assert task.num_classes == 10
        rows = np.zeros((4, 148), np.uint8)  # 6x14x14 bits -> 147 bytes, then the label byte
        rows[:, -1] = [1, 2, 12, 3]
        await channel.send(Envelope(type=msg.RECORDS, job=JOB, worker="rogue", kind="records", size=rows.size,
                                    meta={"num_samples": 4, "feature_bytes": 147, "label_bytes": 1,
                                          "feature_shape": [6, 14, 14], "epsilon": "2.0"}), rows.tobytes())
        reply, _ = await channel.recv(30)
        assert reply.type == msg.ERROR, reply
        return msg.parse_meta(reply, msg.ERROR).reason
    finally:
        await channel.close()


def test_an_edge_sending_labels_outside_the_task_is_refused_and_the_job_trains_on_the_rest(small_fmnist, tmp_path):
    data, port = small_fmnist["data"], _free_port()
    common = {"JOB_NAME": JOB, "FEDMIST_TOKEN": TOKEN, "aggregation_algorithm": "mistnet", "cut_layer": "3",
              "epsilon": "2"}
    aggregator = _worker("aggregate", {
        **common, "WORKER_NAME": "cloud", "PARTICIPANTS_COUNT": "2", "min_clients": "1", "round_timeout": "150",
        "epochs": "1", "batch_size": "256", "learning_rate": "0.2", "model": "lenet5",
        "TEST_DATASET_URL": str(data / "test"), "AGG_BIND_PORT": str(port), "FEDMIST_BIND_HOST": "127.0.0.1",
        "PRETRAINED_MODEL_URL": str(small_fmnist["pretrained"] / "lenet5.pth"),
        "MODEL_URL": str(tmp_path / "model" / "lenet5-mistnet.pth"), "FEDMIST_STATE_DIR": str(tmp_path / "state"),
        "FEDMIST_STATUS_FILE": str(tmp_path / "cloud.json")}, tmp_path / "cloud.log")
    trainer = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and aggregator.poll() is None:
            if "listening on" in (tmp_path / "cloud.log").read_text():
                break
            time.sleep(0.05)
        assert aggregator.poll() is None, (tmp_path / "cloud.log").read_text()[-2000:]
        reason = asyncio.run(_hostile_upload(f"ws://127.0.0.1:{port}"))
        trainer = _worker("train", {**common, "WORKER_NAME": "edge1", "AGG_IP": "127.0.0.1", "AGG_PORT": str(port),
                                    "TRAIN_DATASET_URL": str(data / "edge1"), "DATASET_NAME": "fmnist-edge1",
                                    "FEDMIST_STATE_DIR": str(tmp_path / "edge1-state")},
                          tmp_path / "edge1.log")
        assert aggregator.wait(timeout=240) == 0, (tmp_path / "cloud.log").read_text()[-3000:]
        assert trainer.wait(timeout=60) == 0, (tmp_path / "edge1.log").read_text()[-3000:]
    finally:
        for proc in (aggregator, trainer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    why = "record 2 has label 12, outside [0, 10) (1 such records in this chunk)"
    assert reason == f"records refused: {why}"
    report = json.loads((tmp_path / "cloud.json").read_text())
    assert report["phase"] == "Succeeded"
    assert report["metrics"]["refused"] == {"rogue": why}
    assert report["metrics"]["samples"] == 3000  # edge1's records only
    assert report["metrics"]["accuracy"] > 0.5
    assert report["workers"]["rogue"]["phase"] == "Refused" and report["workers"]["rogue"]["refused"] == why
    assert report["workers"]["edge1"]["phase"] == "Uploaded"
    log = (tmp_path / "cloud.log").read_text()
    assert f"refused worker rogue: {why}; the job goes on without its records" in log
    assert "Traceback" not in log
    assert re.search(r"worker edge1 uploaded 3000 samples", log), log[-2000:]
