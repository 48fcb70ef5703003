"""Time to 85% test accuracy behind slow links (issue 19's headline benchmark), in one invocation.

Fashion-MNIST, LeNet-5, 2 edges, each edge in its own network namespace behind an emulated link
(``fedmist.launch.netlab``: tbf shaping, the delay relay adding 50 ms each way), at each uplink rate given
(default 1, 10, 100 Mbit/s; the downlink is 10x the uplink, as on most access links). Four ways to train:

- ``mistnet``  -- fedmist MistNet, epsilon 2 (``fedmist run --link ...``): the edges upload 149 B of noisy
  bits per image once, the cloud trains the rest of the model.
- ``fedavg``   -- fedmist FedAvg (``fedmist run --link ...``), stopping at the target (``target_accuracy``).
- ``flower``   -- Flower 1.x FedAvg (its gRPC server in the cloud namespace, its clients in the edge
  namespaces, dialling through the same links), the clients training with fedmist's own loop.
- ``raw``      -- the naive baseline: each edge sends its raw images (784 B + 1 label byte each) to the cloud,
  which then trains the whole model there, testing after every epoch.

Every run starts from the same LeNet-5 (``fedmist pretrain`` on the public split, noise-aware at epsilon 1), so
the four differ only in what crosses the links. Time to target: from the run's start (processes launched) to the
first test at or above the target; bytes: what crossed both edges' links, each way, counted by the relay (TLS,
websocket, gRPC framing included).

    .venv/bin/python -m pip install -e '.[bench]'   # flwr
    nice -n 10 .venv/bin/python bench/slow_links.py [--rates 1,10,100] [--edge-size 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from fedmist.launch.netlab.hosts import CLOUD_IP, Netlab  # noqa: E402
from fedmist.launch.netlab.topology import Link, Topology  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")
PORT = 7500
EDGES = ["edge1", "edge2"]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONUNBUFFERED": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def fedmist_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedmist", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, cwd=REPO, check=True)


def link_flag(mbit: float, delay_ms: float) -> str:
    return f"up={mbit:g}mbit,down={10 * mbit:g}mbit,delay={delay_ms:g}ms"


# ---- fedmist (MistNet and FedAvg) through `fedmist run --link` ------------------------------------------------
def _container(env: dict[str, str]) -> dict[str, Any]:
    return {"name": "worker", "image": "fedmist/worker:0.1", "env": [{"name": k, "value": v} for k, v in env.items()]}


def write_job(path: Path, data: Path, pretrained: Path, agg: dict[str, str], trainer: dict[str, str]) -> Path:
    import yaml

    docs: list[dict[str, Any]] = [{"apiVersion": "sedna.io/v1alpha1", "kind": "Dataset", "metadata": {"name": f"ds-{e}"},
                                   "spec": {"url": str(data / e), "format": "idx", "nodeName": e}} for e in EDGES]
    docs += [{"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "out"},
              "spec": {"url": str(path.parent / "model.pth"), "format": "pth"}},
             {"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "pre"},
              "spec": {"url": str(pretrained), "format": "pth"}},
             {"apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "metadata": {"name": "slow-links"},
              "spec": {"pretrainedModel": {"name": "pre"},
                       "aggregationWorker": {"model": {"name": "out"}, "template": {"spec": {
                           "nodeName": "cloud", "containers": [_container(agg)]}}},
                       "trainingWorkers": [{"dataset": {"name": f"ds-{e}"}, "template": {"spec": {
                           "nodeName": e, "containers": [_container(trainer)]}}} for e in EDGES]}}]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def run_fedmist(kind: str, work: Path, data: Path, pretrained: Path, mbit: float, args: argparse.Namespace) -> dict:
    if kind == "mistnet":
        agg = {"aggregation_algorithm": "mistnet", "model": "lenet5", "cut_layer": "3", "epsilon": "2",
               "batch_size": "256", "epochs": str(args.mistnet_epochs), "learning_rate": "0.2", "seed": "0",
               "TEST_DATASET_URL": str(data / "test")}
        trainer = {"aggregation_algorithm": "mistnet", "cut_layer": "3", "epsilon": "2"}
    else:
        agg = {"aggregation_algorithm": "fedavg", "exit_round": str(args.rounds), "min_clients": "2", "seed": "0",
               "target_accuracy": str(args.target), "TEST_DATASET_URL": str(data / "test")}
        trainer = {"batch_size": "32", "learning_rate": "0.01", "epochs": "1"}
    work.mkdir(parents=True)
    job = write_job(work / "job.yaml", data, pretrained, agg, trainer)
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "fedmist", "run", "-f", str(job), "--workdir", str(work / "run"),
                             "--no-progress", "--link", link_flag(mbit, args.delay_ms)],
                            stdout=subprocess.DEVNULL, stderr=open(work / "launcher.log", "w"), env=ENV, cwd=REPO)
    hit, best = None, 0.0
    report = work / "run" / "reports" / "cloud.json"
    while proc.poll() is None:
        try:
            history = json.loads(report.read_text()).get("history") or []
        except (OSError, ValueError):
            history = []
        for entry in history:
            accuracy = entry.get("test_accuracy", entry.get("accuracy")) or 0.0
            best = max(best, accuracy)
            if hit is None and accuracy >= args.target:
                hit = time.time() - started
        time.sleep(0.2)
    wall = time.time() - started
    status = json.loads((work / "run" / "status.json").read_text())
    history = status.get("metrics", {}).get("history") or []
    best = max([best, *((h.get("test_accuracy", h.get("accuracy")) or 0.0) for h in history)])
    links = status.get("links", {}).get("edges", {})
    return {"exit": proc.returncode, "to_target_s": hit, "wall_s": wall, "best": best, "steps": len(history),
            "link_busy_s": busy_s(links.values(), started),
            "bytes_up": sum(e.get("bytes_up", 0) for e in links.values()),
            "bytes_down": sum(e.get("bytes_down", 0) for e in links.values())}


def busy_s(links: Any, started: float) -> list[float | None]:
    """(first byte up, last byte up) on the slowest edge link, in seconds from the run's start: when the
    uplinks carried data (the rest of the time to target is start-up, compute and waiting)."""
    spans = [(c["first_byte_at"], c["last_byte_at"]) for c in links if c.get("first_byte_at")]
    if not spans:
        return [None, None]
    return [round(min(a for a, _ in spans) - started, 1), round(max(b for _, b in spans) - started, 1)]


# ---- Flower and the raw-upload baseline, in namespaces of the bench's own lab --------------------------------
def in_netns(netns: str, *argv: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, str(Path(__file__).resolve()), *argv],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=ENV, cwd=REPO)


def run_in_lab(kind: str, work: Path, data: Path, pretrained: Path, mbit: float, args: argparse.Namespace) -> dict:
    work.mkdir(parents=True)
    link = Link(up_bps=int(mbit * 1e6), down_bps=int(10 * mbit * 1e6), delay_s=args.delay_ms / 1000)
    result = work / "result.json"
    common = ["--data", str(data), "--pretrained", str(pretrained), "--target", str(args.target),
              "--rounds", str(args.rounds), "--result", str(result)]
    with Netlab(Topology(default=link), EDGES) as lab:
        lab.start(PORT)
        started = time.time()
        server = in_netns(lab.cloud, f"_{kind}_cloud", *common, log=work / "cloud.log")
        time.sleep(0.5 if kind == "raw" else 3.0)  # the server listens before the edges dial (Flower imports grpc)
        edges = [in_netns(lab.netns_of(e), f"_{kind}_edge", *common, "--edge", e, "--host", lab.dial_host(e),
                          log=work / f"{e}.log") for e in EDGES]
        try:
            server.wait(timeout=args.timeout)
            for edge in edges:
                edge.wait(timeout=60)
        finally:
            for p in (server, *edges):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        wall = time.time() - started
        counters = lab.snapshot()["edges"]
    out = json.loads(result.read_text()) if result.exists() else {}
    hit = out.get("hit_at")
    return {"exit": server.returncode, "to_target_s": None if hit is None else hit - started, "wall_s": wall,
            "best": out.get("best", 0.0), "steps": out.get("steps", 0), "link_busy_s": busy_s(counters.values(), started),
            "bytes_up": sum(c.get("bytes_up", 0) for c in counters.values()),
            "bytes_down": sum(c.get("bytes_down", 0) for c in counters.values())}


def _model(pretrained: str):
    from fedmist.models.lenet import lenet5
    from fedmist.models.weights import load_weights

    model = lenet5()
    model.load_state_dict(load_weights(pretrained))
    return model


def _test_set(data: str):
    from fedmist.data.idx import load_idx_dataset
    from fedmist.models.local_train import as_tensors

    return as_tensors(*load_idx_dataset(Path(data) / "test"))


class Progress:
    """The cloud side's record: the best accuracy, when the target was first met, how many tests ran."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.best, self.hit_at, self.steps = args, 0.0, None, 0

    def tested(self, accuracy: float) -> bool:
        self.steps += 1
        self.best = max(self.best, accuracy)
        if self.hit_at is None and accuracy >= self.args.target:
            self.hit_at = time.time()
        Path(self.args.result).write_text(json.dumps({"best": self.best, "hit_at": self.hit_at, "steps": self.steps}))
        return self.hit_at is not None


def flower_cloud(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from flwr.common import ndarrays_to_parameters
    from flwr.compat.server.app import start_server
    from flwr.server import ServerConfig
    from flwr.server.strategy import FedAvg

    from fedmist.models.local_train import evaluate

    torch.set_num_threads(1)
    model = _model(args.pretrained)
    keys = list(model.state_dict())
    test = _test_set(args.data)
    progress = Progress(args)

    def central(server_round: int, arrays: list, config: dict) -> tuple[float, dict]:
        model.load_state_dict({k: torch.from_numpy(np.asarray(a)) for k, a in zip(keys, arrays)})
        metrics = evaluate(model, *test)
        if server_round > 0:
            progress.tested(metrics["accuracy"])
        return metrics["loss"], {"accuracy": metrics["accuracy"]}

    strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=2, min_available_clients=2,
                      evaluate_fn=central,
                      initial_parameters=ndarrays_to_parameters([v.numpy() for v in model.state_dict().values()]))
    # Flower has no stop-at-target: it runs its rounds, and the time to target is read from the tests above.
    start_server(server_address=f"{CLOUD_IP}:{PORT}", config=ServerConfig(num_rounds=args.rounds, round_timeout=600),
                 strategy=strategy)


def flower_edge(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from flwr.client import NumPyClient
    from flwr.compat.client.app import start_client

    from fedmist.data.idx import load_idx_dataset
    from fedmist.models.local_train import LocalConfig, as_tensors, train_local

    torch.set_num_threads(1)
    x, y = as_tensors(*load_idx_dataset(Path(args.data) / args.edge))
    model = _model(args.pretrained)
    keys = list(model.state_dict())

    class Client(NumPyClient):
        def get_parameters(self, config):  # type: ignore[no-untyped-def]
            return [v.numpy() for v in model.state_dict().values()]

        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            model.load_state_dict({k: torch.from_numpy(np.asarray(a).copy()) for k, a in zip(keys, parameters)})
            result = train_local(model, x, y, LocalConfig(epochs=1, batch_size=32, learning_rate=0.01))
            return self.get_parameters({}), result.num_samples, {}

    start_client(server_address=f"{args.host}:{PORT}", client=Client().to_client(), insecure=True, max_wait_time=60)


def raw_cloud(args: argparse.Namespace) -> None:
    """Receive both edges' raw images, then train the whole LeNet-5 here (MistNet's cloud recipe: batch 256,
    one-cycle at peak lr 0.2 is for features; raw images train with fedmist's local loop, batch 64)."""
    import numpy as np
    import torch

    from fedmist.models.local_train import LocalConfig, as_tensors, evaluate, train_local

    torch.set_num_threads(2)
    server = socket.create_server((CLOUD_IP, PORT))
    parts: list = []

    def receive(conn: socket.socket) -> None:
        with conn:
            conn.sendall(b"R")  # ready: the edge sends only once the cloud is there (the relay accepts before)
            count = struct.unpack("<Q", _recv_exact(conn, 8))[0]
            parts.append(np.frombuffer(_recv_exact(conn, count * 785), np.uint8).reshape(count, 785))

    receivers = []
    for _ in EDGES:  # both edges upload at once, each on its own link
        receivers.append(threading.Thread(target=receive, args=(server.accept()[0],)))
        receivers[-1].start()
    for thread in receivers:
        thread.join()
    rows = np.concatenate(parts)
    x, y = as_tensors(rows[:, :784].reshape(-1, 28, 28), rows[:, 784])
    model = _model(args.pretrained)
    test = _test_set(args.data)
    progress = Progress(args)
    for epoch in range(args.rounds):
        train_local(model, x, y, LocalConfig(epochs=1, batch_size=64, learning_rate=0.01, seed=epoch))
        if progress.tested(evaluate(model, *test)["accuracy"]):
            break


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise ConnectionError("edge closed early")
        buf += chunk
    return bytes(buf)


def raw_edge(args: argparse.Namespace) -> None:
    import numpy as np

    from fedmist.data.idx import load_idx_dataset

    images, labels = load_idx_dataset(Path(args.data) / args.edge)
    rows = np.concatenate([images.reshape(len(images), -1), labels.reshape(-1, 1)], axis=1)
    for _ in range(600):
        try:
            with socket.create_connection((args.host, PORT), timeout=600) as conn:
                if conn.recv(1) != b"R":
                    raise ConnectionError("the cloud is not listening yet")
                conn.sendall(struct.pack("<Q", len(rows)) + rows.tobytes())
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the cloud never took the upload")


# ---- the driver --------------------------------------------------------------------------------------------
def prepare(root: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    data, pretrained = root / "data", root / "pretrained" / "lenet5.pth"
    fedmist_cli("data", "split", "--source", str(FMNIST), "--out", str(data), "--public", str(args.public),
                "--edges", f"{args.edge_size},{args.edge_size}", "--seed", "0")
    fedmist_cli("pretrain", "--data", str(data / "public"), "--out", str(pretrained), "--epochs", str(args.pretrain_epochs))
    return data, pretrained


def fmt_s(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"


def main() -> None:
    sub = sys.argv[1] if len(sys.argv) > 1 else ""
    roles = {"_flower_cloud": flower_cloud, "_flower_edge": flower_edge, "_raw_cloud": raw_cloud, "_raw_edge": raw_edge}
    if sub in roles:
        p = argparse.ArgumentParser()
        for flag in ("--data", "--pretrained", "--result", "--edge", "--host"):
            p.add_argument(flag)
        p.add_argument("--target", type=float)
        p.add_argument("--rounds", type=int)
        roles[sub](p.parse_args(sys.argv[2:]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1,10,100", help="uplink rates in Mbit/s (downlink: 10x)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay, each direction")
    parser.add_argument("--edge-size", type=int, default=10_000, help="images per edge")
    parser.add_argument("--public", type=int, default=10_000, help="public images for the pretrained model")
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--mistnet-epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=8, help="most FedAvg rounds / raw-baseline epochs")
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--systems", default="mistnet,fedavg,flower,raw")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--out", help="write every figure as JSON here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedmist-slow-links-"))
    print(f"load average before: {os.getloadavg()}; work folder {root}", flush=True)
    data, pretrained = prepare(root, args)
    results: dict[str, dict[str, Any]] = {}
    for mbit in (float(r) for r in args.rates.split(",")):
        for kind in args.systems.split(","):
            runner = run_fedmist if kind in ("mistnet", "fedavg") else run_in_lab
            key = f"{kind}@{mbit:g}"
            results[key] = r = runner(kind, root / key, data, pretrained, mbit, args)
            r["load"] = os.getloadavg()[0]
            print(f"{mbit:g} Mbit/s {kind:8s} to {args.target:.0%}: {fmt_s(r['to_target_s']):>12s}  best {r['best']:.4f}"
                  f"  wall {r['wall_s']:.1f} s  up {r['bytes_up'] / 1e6:.2f} MB  down {r['bytes_down'] / 1e6:.2f} MB"
                  f"  steps {r['steps']}  uplinks busy {r['link_busy_s']} s  exit {r['exit']}  load {r['load']:.2f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\n| uplink | system | to {args.target:.0%} | best acc | wall s | MB up (both edges) | MB down |")
    print("|---|---|---|---|---|---|---|")
    for key, r in results.items():
        kind, mbit = key.split("@")
        print(f"| {mbit} Mbit/s | {kind} | {fmt_s(r['to_target_s'])} | {r['best']:.4f} | {r['wall_s']:.1f} | "
              f"{r['bytes_up'] / 1e6:.2f} | {r['bytes_down'] / 1e6:.2f} |")


if __name__ == "__main__":
    main()
