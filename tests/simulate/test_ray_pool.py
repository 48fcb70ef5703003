"""``fedmist simulate --ray-address``: a real local Ray cluster -- a head with no CPUs and two worker nodes, each
its own ``ray start --block`` process tree -- and a simulation whose two actors land one on each worker node.
Teardown stops the three ``ray start`` processes by PID (each ends the Ray processes it started)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from fedmist.launch.local import free_port

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _cluster_nodes(address: str) -> int:
    out = subprocess.run([str(RAY), "status", "--address", address], capture_output=True, text=True, timeout=60)
    return out.stdout.count(" node_") if out.returncode == 0 else 0


@pytest.fixture()
def ray_cluster():
    port = free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="fr", dir="/tmp")  # short: Ray's unix socket paths must fit 107 bytes
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "RAY_USAGE_STATS_ENABLED": "0"}

    def common(node: int) -> list[str]:
        """Three nodes on one host: every port a node binds is its own. Left to Ray, two raylets started
        together sometimes picked the same one ("bind: Address already in use", seen in CI)."""
        ports = [flag for name in ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                                   "--node-manager-port", "--object-manager-port", "--metrics-export-port",
                                   "--runtime-env-agent-port") for flag in (name, str(free_port()))]
        first = 20000 + 200 * node  # worker processes: a range of their own per node
        return ["--block", "--disable-usage-stats", *ports, "--min-worker-port", str(first),
                "--max-worker-port", str(first + 199)]

    procs = [subprocess.Popen([str(RAY), "start", "--head", "--port", str(port), "--num-cpus", "0",
                               "--ray-client-server-port", str(free_port()), "--temp-dir", temp,
                               "--include-dashboard=false", *common(0)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.monotonic() + 240
        while not _listening(port):  # the head's GCS answers: worker nodes can join
            assert time.monotonic() < deadline and procs[0].poll() is None, "the Ray head did not start"
            time.sleep(0.5)
        for index in range(2):  # one after the other: each joins before the next starts
            log = open(Path(temp) / f"worker{index}.log", "w")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen([str(RAY), "start", "--address", address, "--num-cpus", "1",
                                           *common(index + 1)],
                                          env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            while _cluster_nodes(address) < index + 2:
                assert time.monotonic() < deadline, "the two Ray worker nodes did not join"
                failed = [p for p in procs if p.poll() is not None]
                assert not failed, [(p.args, (Path(temp) / f"worker{index}.log").read_text()[-1500:])
                                    for p in failed]
                time.sleep(1)
        yield address
    finally:
        for proc in reversed(procs):  # workers first, then the head; each --block process stops its own tree
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what this ray start began
                proc.wait(10)
        shutil.rmtree(temp, ignore_errors=True)


def test_simulation_runs_on_a_ray_cluster_with_two_worker_nodes(ray_cluster, tmp_path):
    if not (FMNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    docs = list(yaml.safe_load_all((REPO / "examples" / "mnist-fedavg" / "job.yaml").read_text()))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "fedmist", "simulate", "-f", str(job), "--path-map", f"/model={tmp_path / 'model'}",
         "--data", str(FMNIST / "t10k"), "--clients", "8", "--set", "fraction_fit=0.5", "--set", "exit_round=2",
         "--set", f"TEST_DATASET_URL={FMNIST / 't10k'}", "--set", "learning_rate=0.1",
         "--ray-address", ray_cluster, "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=180, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pool: 2 ray workers" in result.stderr
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["phase"] == "Succeeded"
    assert status["simulation"]["engine"] == "ray" and status["simulation"]["ray_nodes"] == 2
    workers = status["workers"]
    assert len({w["node"] for w in workers.values()}) == 2  # one actor per worker node (the head has no CPU)
    assert sum(w["clients_trained"] for w in workers.values()) == 8  # 4 clients x 2 rounds
    history = status["metrics"]["history"]
    assert [h["participants"] for h in history] == [4, 4]
    assert history[-1]["accuracy"] > 0.15  # 2 rounds of 4 x 1,250 images (~0.2); a no-op stays at 0.1
