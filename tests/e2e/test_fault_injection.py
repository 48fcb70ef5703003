"""Fault injection with real processes: the real `fedmist run`, workers SIGKILLed by the PIDs in status.json, and
a TCP proxy (fedmist.testing.fault_proxy) between trainers and the aggregator that throttles or cuts traffic.
Outcomes and how each is reproduced: RELIABILITY.md."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

import psutil
import pytest
from e2e_helpers import split_fmnist
from fault_helpers import AGGREGATOR, JobRun, write_job

from fedmist.launch.local import free_port
from fedmist.testing.fault_proxy import FaultProxy

pytestmark = pytest.mark.e2e

EDGE_SAMPLES = 3000  # small_fmnist's edges
RECORD_BYTES = 148  # 6x14x14 bits packed + 1 label byte


def _mistnet_env(data: Path, epochs: int) -> tuple[dict[str, str], dict[str, str]]:
    agg = {"aggregation_algorithm": "mistnet", "model": "lenet5", "cut_layer": "3", "epsilon": "2",
           "batch_size": "64", "epochs": str(epochs), "learning_rate": "0.05", "seed": "3",
           "TEST_DATASET_URL": str(data / "test")}
    return agg, {"aggregation_algorithm": "mistnet", "cut_layer": "3", "epsilon": "2"}


def _mistnet_job(tmp_path: Path, small_fmnist: dict[str, Path], tag: str, epochs: int) -> Path:
    agg, trainer = _mistnet_env(small_fmnist["data"], epochs)
    return write_job(tmp_path / f"{tag}.yaml", "fault-mistnet", small_fmnist["data"], ["edge1", "edge2"], agg,
                     trainer, tmp_path / tag / "model.pth", small_fmnist["pretrained"] / "lenet5.pth")


def _edge_view(run: JobRun, edge: str) -> dict:
    """What the aggregator knows of an edge (received records, bytes over every session, connections)."""
    return run.report(AGGREGATOR).get("workers", {}).get(edge, {})


def test_a_aggregator_killed_mid_cloud_training_resumes_and_matches_an_uninterrupted_run(small_fmnist, tmp_path):
    baseline = JobRun(_mistnet_job(tmp_path, small_fmnist, "base", epochs=4), tmp_path / "base")
    assert baseline.finish() == 0, baseline.stderr[-2000:]
    expected = baseline.status()["metrics"]["accuracy"]
    for edge in ("edge1", "edge2"):  # the same edges: they keep their secret noise seed in their state folder
        (tmp_path / "killed" / "state" / edge).mkdir(parents=True)
        shutil.copy2(tmp_path / "base" / "state" / edge / "noise-seed", tmp_path / "killed" / "state" / edge)

    run = JobRun(_mistnet_job(tmp_path, small_fmnist, "killed", epochs=4), tmp_path / "killed")
    epoch = run.wait_until(lambda: (p := run.status().get("progress", {})).get("stage") == "training"
                           and 1 <= p.get("epoch", 0) < 4 and p["epoch"], "cloud training epoch 1")
    run.kill(AGGREGATOR)
    assert run.finish() == 0, run.stderr[-2000:]
    status = run.status()
    metrics = status["metrics"]
    assert status["phase"] == "Succeeded" and status["aggregator"]["restarts"] == 1
    assert metrics["resumed_from_epoch"] >= epoch
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4]
    assert abs(metrics["accuracy"] - expected) <= 0.01, (metrics["accuracy"], expected)
    assert metrics["accuracy"] > 0.72
    assert "resuming cloud training after epoch" in run.log(AGGREGATOR)
    print(f"\n[fault a] killed at epoch {epoch}, resumed from epoch {metrics['resumed_from_epoch']}: accuracy "
          f"{metrics['accuracy']:.4f} vs uninterrupted {expected:.4f}")


def _proxied(rate: float) -> tuple[FaultProxy, dict[str, str]]:
    agg_port = free_port()
    proxy = FaultProxy(agg_port, rate_bytes_per_s=rate, socket_buffer=16 * 1024).start()
    return proxy, {"FEDMIST_AGG_PORT": str(agg_port), "FEDMIST_TRAINER_AGG_PORT": str(proxy.port)}


@pytest.fixture(scope="module")
def big_edge(tmp_path_factory, small_fmnist) -> dict[str, Path]:
    """edge1 of 12,000 images (so its extraction, and with it the upload, takes seconds), edge2 of 1,500, the 10k
    test set, and small_fmnist's pretrained LeNet-5."""
    root = split_fmnist(tmp_path_factory.mktemp("bigedge") / "data", "12000,1500", seed=5)
    return {"data": root, "pretrained": small_fmnist["pretrained"]}


def test_b_trainer_killed_mid_upload_resumes_without_resending_what_arrived(big_edge, tmp_path):
    """Killed while it still extracts and sends, edge1 is restarted by the launcher and resumes at the record
    the aggregator last stored; what it had already put on the wire is not sent again."""
    samples = 12_000
    features = samples * RECORD_BYTES
    proxy, env = _proxied(rate=0)  # no fault: the proxy only counts the bytes the trainers put on the wire
    try:
        run = JobRun(_mistnet_job(tmp_path, big_edge, "b", epochs=1), tmp_path / "b", env=env)
        # The proxy's count is live (the aggregator's report is throttled): once 700 kB went up, edge1 has
        # produced at least a quarter of its records (edge2 holds 222 kB in all) and is still extracting.
        run.wait_until(lambda: 700_000 <= proxy.counters.bytes_up <= 1_500_000, "edge1 part-way through its upload")
        run.kill("edge1")
        assert run.finish() == 0, run.stderr[-2000:]
    finally:
        proxy.stop()
    status = run.status()
    view = _edge_view(run, "edge1")
    resumed = [int(n) for n in re.findall(r"worker edge1 resumes its upload at record (\d+)", run.log(AGGREGATOR))]
    assert status["phase"] == "Succeeded" and status["workers"]["edge1"]["restarts"] == 1
    assert len(resumed) == 1 and 1000 <= resumed[0] < samples, resumed
    assert view["connections"] == 2 and view["received"] == samples
    # what the aggregator received from edge1 over both sessions (complete frames, framing included)
    assert features < view["bytes_up"] <= 1.1 * features, view
    # every byte both trainers pushed through the proxy: TLS, websocket framing and any frame cut by the kill
    both = (samples + 1500) * RECORD_BYTES
    assert proxy.counters.bytes_up <= 1.1 * both, proxy.counters
    print(f"\n[fault b] edge1 killed, resumed at record {resumed[0]}/{samples}; aggregator received "
          f"{view['bytes_up']} B = {view['bytes_up'] / features:.3f}x its features; the proxy carried "
          f"{proxy.counters.bytes_up} B = {proxy.counters.bytes_up / both:.3f}x both edges' features")


def test_c_every_connection_dropped_for_10_s_and_the_job_still_finishes(small_fmnist, tmp_path):
    proxy, env = _proxied(rate=150_000)
    try:
        run = JobRun(_mistnet_job(tmp_path, small_fmnist, "c", epochs=1), tmp_path / "c", env=env)
        run.wait_until(lambda: 300 <= _edge_view(run, "edge1").get("received", 0) < EDGE_SAMPLES - 600,
                       "the uploads under way")
        proxy.drop_for(10.0)
        assert run.finish() == 0, run.stderr[-2000:]
    finally:
        proxy.stop()
    status = run.status()
    assert status["phase"] == "Succeeded"
    assert proxy.counters.cut >= 1 and proxy.counters.refused >= 1, proxy.counters
    for edge in ("edge1", "edge2"):
        worker = status["workers"][edge]
        assert worker["restarts"] == 0 and worker["phase"] == "Succeeded", worker  # reconnected in-process
        assert _edge_view(run, edge)["received"] == EDGE_SAMPLES
    assert status["workers"]["edge1"]["sessions"] >= 2
    assert status["metrics"]["accuracy"] > 0.6
    print(f"\n[fault c] {proxy.counters.cut} connections cut, {proxy.counters.refused} reconnects refused during "
          f"the 10 s outage; sessions {[status['workers'][e]['sessions'] for e in ('edge1', 'edge2')]}; job "
          f"succeeded in {status['elapsed_s']:.1f} s")


@pytest.fixture(scope="module")
def three_edges(tmp_path_factory) -> Path:
    """edge1..edge3 of 1,500 Fashion-MNIST images each and the 10k test set (IDX), made by the real CLI."""
    return split_fmnist(tmp_path_factory.mktemp("fault3") / "data", "1500,1500,1500", seed=4)


def _fedavg_job(tmp_path: Path, data: Path, edges: list[str], rounds: int, epochs: int, **agg: str) -> Path:
    agg_env = {"aggregation_algorithm": "fedavg", "model": "lenet5", "exit_round": str(rounds),
               "min_clients": "2", "round_timeout": "30", "TEST_DATASET_URL": str(data / "test"), **agg}
    trainer_env = {"batch_size": "32", "learning_rate": "0.05", "epochs": str(epochs)}
    return write_job(tmp_path / "job.yaml", "fault-fedavg", data, edges, agg_env, trainer_env,
                     tmp_path / "model" / "lenet5-fedavg.pth")


def test_d_fedavg_worker_killed_in_round_3_the_quorum_goes_on_and_it_rejoins(three_edges, tmp_path):
    run = JobRun(_fedavg_job(tmp_path, three_edges, ["edge1", "edge2", "edge3"], rounds=5, epochs=3),
                 tmp_path / "run")
    run.wait_until(lambda: run.status().get("progress", {}).get("round") == 3, "round 3 dispatched")
    run.kill("edge3")
    assert run.finish() == 0, run.stderr[-2000:]
    status = run.status()
    history = status["metrics"]["history"]
    assert status["phase"] == "Succeeded" and [h["round"] for h in history] == [1, 2, 3, 4, 5]
    assert history[2]["lost_workers"] == ["edge3"] and history[2]["participants"] == 2  # the quorum closed it
    assert all(h["participants"] >= 2 for h in history)
    edge3 = status["workers"]["edge3"]
    # rejoined: the launcher restarted it, it connected again and was still connected when the job ended
    # (it exits 0 only on the aggregator's STOP). Which round it trains in again depends on how fast the
    # restarted process starts: under load that can be after round 5 was dispatched.
    assert edge3["restarts"] == 1 and edge3["connections"] == 2 and edge3["phase"] == "Succeeded", edge3
    assert "worker edge3 connected" in run.log(AGGREGATOR).split("worker edge3 lost in round 3")[1]
    assert status["metrics"]["accuracy"] > 0.6
    print(f"\n[fault d] participants per round {[h['participants'] for h in history]}, edge3 restarts "
          f"{edge3['restarts']}, connections {edge3['connections']}, accuracy {status['metrics']['accuracy']:.4f}")


def test_fedavg_aggregator_killed_between_rounds_resumes_from_its_round_checkpoint(three_edges, tmp_path):
    run = JobRun(_fedavg_job(tmp_path, three_edges, ["edge1", "edge2"], rounds=4, epochs=1), tmp_path / "run")
    run.wait_until(lambda: run.status().get("progress", {}).get("round", 0) >= 3, "round 3 dispatched")
    run.kill(AGGREGATOR)
    assert run.finish() == 0, run.stderr[-2000:]
    status = run.status()
    metrics = status["metrics"]
    assert status["phase"] == "Succeeded" and status["aggregator"]["restarts"] == 1
    assert metrics["resumed_from_round"] >= 2
    assert [h["round"] for h in metrics["history"]] == [1, 2, 3, 4]
    assert all(status["workers"][e]["restarts"] == 0 for e in ("edge1", "edge2"))  # they reconnected
    assert metrics["accuracy"] > 0.6
    print(f"\n[fault f] aggregator killed in round 3, resumed after round {metrics['resumed_from_round']}, "
          f"accuracy {metrics['accuracy']:.4f}")


def test_the_restart_limit_fails_the_job_with_a_clear_condition(three_edges, tmp_path):
    """An aggregator that dies at every start (its model factory exits the worker process with code 3, as a
    crashing native library would; the launcher's up-front check builds the model fine) is restarted once,
    then the job fails."""
    (tmp_path / "crashing_model.py").write_text(
        "import os\nfrom fedmist.models.lenet import lenet5\n\n\ndef factory(**kwargs):\n"
        "    if os.environ.get('WORKER_NAME'):\n        os._exit(3)\n    return lenet5(**kwargs)\n")
    job = _fedavg_job(tmp_path, three_edges, ["edge1", "edge2"], rounds=2, epochs=1, model="crashing_model:factory")
    run = JobRun(job, tmp_path / "run", "--max-restarts", "1", env={"PYTHONPATH": str(tmp_path)})
    assert run.finish() == 1, run.stderr[-2000:]
    status = run.status()
    condition = status["conditions"][-1]
    assert status["phase"] == "Failed" and condition["reason"] == "RestartLimitReached"
    assert condition["message"].startswith("worker cloud (aggregator) exited with code 3"), condition
    assert condition["message"].endswith("; gave up after 1 restarts (--max-restarts 1)")
    assert status["aggregator"]["restarts"] == 1
    assert "reason: worker cloud (aggregator)" in run.stderr


def test_sigterm_to_the_launcher_stops_every_worker_it_started(small_fmnist, tmp_path):
    run = JobRun(_mistnet_job(tmp_path, small_fmnist, "term", epochs=20), tmp_path / "term")
    run.wait_until(lambda: run.status().get("progress", {}).get("stage") == "training", "cloud training")
    status = run.status()
    pids = [int(status["aggregator"]["pid"])] + [int(w["pid"]) for w in status["workers"].values() if w.get("pid")]
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 1
    final = run.status()
    assert final["phase"] == "Failed"
    assert final["conditions"][-1]["reason"] == "Terminated"
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"worker processes outlived the launcher: {alive}"
