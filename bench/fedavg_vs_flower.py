"""FedAvg in fedmist and in Flower, the same job one after the other, in one invocation (issue 3's benchmark).

LeNet-5 on Fashion-MNIST, 2 workers x 30k IID images, 1 local epoch, batch 32, SGD lr 0.01 momentum 0.9,
10 rounds, the global model tested on the 10k test set after every round, 1 torch thread per process. Both
frameworks run real processes on this machine (fedmist: ``LocalJob``, the launcher behind ``fedmist run``;
Flower: its gRPC server and clients, ``flwr.compat`` ``start_server``/``start_client``, because the simulation
engine needs Ray). Flower runs twice, with two clients:

- ``flower`` -- the client as Flower users write it (Flower's PyTorch quickstart ``train()``): a
  ``DataLoader(batch_size=32, shuffle=True)`` over the worker's tensors (already float, no per-sample
  transforms, so the loader is as cheap as it gets) and ``torch.optim.SGD(lr, momentum=0.9)``. This is the
  job a Flower user runs; fedmist supplies its own training loop, so this row compares what each user gets.
- ``flower-fedmist-loop`` -- the client calls fedmist's own ``train_local``. Both frameworks then train with
  the same code, so the difference is the framework alone: dispatch, serialisation, transport, aggregation.

Both Flower servers test with fedmist's ``evaluate``, like the fedmist aggregator.

Bytes are what the kernel counted on the aggregator's TCP sockets (``ss -ti``: bytes_acked down,
bytes_received up), so gRPC/HTTP2 and websocket framing are both included.

    pip install -e '.[bench]'          # flwr
    .venv/bin/python bench/fedavg_vs_flower.py [--rounds 10] [--edge-size 30000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ByteMeter(threading.Thread):
    """Polls the kernel's per-connection byte counters of the server port; keeps each connection's maximum."""

    _LINE = re.compile(r"bytes_acked:(\d+).*?bytes_received:(\d+)", re.S)

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.conns, self.stop = port, {}, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{self.port} )"],
                                 capture_output=True, text=True, timeout=10).stdout
            for block in re.split(r"\n(?=\S)", out):
                peer = block.split()[3] if len(block.split()) > 3 else "?"
                match = self._LINE.search(block)
                if match:
                    old = self.conns.get(peer, (0, 0))
                    self.conns[peer] = (max(old[0], int(match[1])), max(old[1], int(match[2])))
            time.sleep(0.1)

    def totals(self) -> tuple[int, int]:
        """(bytes down = server->workers, bytes up = workers->server)."""
        return sum(c[0] for c in self.conns.values()), sum(c[1] for c in self.conns.values())


def job_yaml(data: Path, model: Path, args: argparse.Namespace) -> str:
    trainers = "".join(f"""
    - dataset: {{name: edge{i}}}
      template:
        spec:
          nodeName: edge{i}
          containers:
            - image: fedmist/worker:0.1
              name: train-worker
              env:
                - {{name: batch_size, value: "{args.batch}"}}
                - {{name: learning_rate, value: "{args.lr}"}}
                - {{name: epochs, value: "{args.epochs}"}}""" for i in range(1, args.workers + 1))
    datasets = "".join(f"""apiVersion: sedna.io/v1alpha1
kind: Dataset
metadata: {{name: edge{i}}}
spec: {{url: {data}/edge{i}, format: idx, nodeName: edge{i}}}
---
""" for i in range(1, args.workers + 1))
    return datasets + f"""apiVersion: sedna.io/v1alpha1
kind: Model
metadata: {{name: out}}
spec: {{url: {model}, format: pth}}
---
apiVersion: sedna.io/v1alpha1
kind: FederatedLearningJob
metadata: {{name: bench-fedavg}}
spec:
  aggregationWorker:
    model: {{name: out}}
    template:
      spec:
        nodeName: cloud
        containers:
          - image: fedmist/worker:0.1
            name: agg-worker
            env:
              - {{name: aggregation_algorithm, value: fedavg}}
              - {{name: exit_round, value: "{args.rounds}"}}
              - {{name: min_clients, value: "{args.workers}"}}
              - {{name: seed, value: "{args.seed}"}}
              - {{name: TEST_DATASET_URL, value: {data}/test}}
  trainingWorkers:{trainers}
"""


def run_fedmist(data: Path, work: Path, args: argparse.Namespace) -> dict:
    from fedmist.launch import local
    from fedmist.spec.job import resolve_job
    from fedmist.spec.load import load_manifests

    path = work / "job.yaml"
    path.write_text(job_yaml(data, work / "model.pth", args))
    local.thread_budget = lambda trainers, cores=None: (1, 1)  # the benchmark's rule: 1 torch thread per process
    job = local.LocalJob(resolve_job(load_manifests([path], {})),
                         local.RunOptions(workdir=work / "run", progress=False))
    meter = ByteMeter(job.port)
    meter.start()
    code = job.run()
    meter.stop.set()
    history = json.loads((work / "run" / "status.json").read_text())["metrics"]["history"]
    rounds = [{"round": h["round"], "accuracy": h["accuracy"], "elapsed_s": h["elapsed_s"],
               "dispatched_s": h["dispatched_s"], "train_s": h["max_compute_s"]} for h in history]
    return {"exit": code, "rounds": rounds, "bytes": meter.totals()}


def run_flower(data: Path, work: Path, args: argparse.Namespace, loop: str = "pytorch") -> dict:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--data", str(data), "--port", str(port), *forward(args)]
    logs = [open(work / f"flower-{n}.log", "w") for n in ("server", *[f"edge{i}" for i in range(1, args.workers + 1)])]
    result = work / "flower.json"
    server = subprocess.Popen([*me, "_flower_server", *common, "--result", str(result)], env=env,
                              stdout=logs[0], stderr=subprocess.STDOUT)
    meter = ByteMeter(port)
    meter.start()
    clients = [subprocess.Popen([*me, "_flower_client", *common, "--edge", str(i), "--loop", loop], env=env, stdout=logs[i],
                                stderr=subprocess.STDOUT) for i in range(1, args.workers + 1)]
    try:
        server.wait(timeout=args.timeout)
        for c in clients:
            c.wait(timeout=60)
    finally:
        meter.stop.set()
        for p in (server, *clients):
            if p.poll() is None:
                p.kill()
    return {"exit": server.returncode, "rounds": json.loads(result.read_text()), "bytes": meter.totals()}


def forward(args: argparse.Namespace) -> list[str]:
    return ["--rounds", str(args.rounds), "--workers", str(args.workers), "--batch", str(args.batch),
            "--lr", str(args.lr), "--epochs", str(args.epochs), "--seed", str(args.seed)]


def flower_server(args: argparse.Namespace) -> None:
    import torch
    from flwr.common import ndarrays_to_parameters
    from flwr.compat.server.app import start_server
    from flwr.server import ServerConfig
    from flwr.server.strategy import FedAvg

    from fedmist.data.idx import load_idx_dataset
    from fedmist.models.lenet import lenet5
    from fedmist.models.local_train import as_tensors, evaluate

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = lenet5()
    keys = list(model.state_dict())
    test = as_tensors(*load_idx_dataset(Path(args.data) / "test"))
    marks: dict[int, float] = {}
    rounds: list[dict] = []
    train_s: dict[int, float] = {}

    def central(server_round: int, arrays: list, config: dict) -> tuple[float, dict]:
        model.load_state_dict({k: torch.from_numpy(np.asarray(a)) for k, a in zip(keys, arrays)})
        metrics = evaluate(model, *test)
        if server_round > 0:
            now = time.monotonic()
            rounds.append({"round": server_round, "accuracy": metrics["accuracy"],
                           "elapsed_s": round(now - marks[1], 3),
                           "dispatched_s": round(marks[server_round] - marks[1], 3),
                           "train_s": train_s.get(server_round, 0.0)})
        return metrics["loss"], {"accuracy": metrics["accuracy"]}

    class Timed(FedAvg):
        def configure_fit(self, server_round, parameters, client_manager):  # type: ignore[no-untyped-def]
            instructions = super().configure_fit(server_round, parameters, client_manager)
            marks[server_round] = time.monotonic()  # the clients are sampled: dispatch starts now
            return instructions

    def fit_metrics(results: list) -> dict:
        train_s[len(marks)] = max(float(m.get("train_s", 0.0)) for _, m in results)
        return {}

    strategy = Timed(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=args.workers,
                     min_available_clients=args.workers, evaluate_fn=central, fit_metrics_aggregation_fn=fit_metrics,
                     initial_parameters=ndarrays_to_parameters([v.numpy() for v in model.state_dict().values()]))
    start_server(server_address=f"127.0.0.1:{args.port}", config=ServerConfig(num_rounds=args.rounds),
                 strategy=strategy)
    Path(args.result).write_text(json.dumps(rounds))


def flower_client(args: argparse.Namespace) -> None:
    import torch
    from flwr.client import NumPyClient
    from flwr.compat.client.app import start_client

    from fedmist.data.idx import load_idx_dataset
    from fedmist.models.lenet import lenet5
    from fedmist.models.local_train import LocalConfig, as_tensors, train_local

    torch.set_num_threads(1)
    x, y = as_tensors(*load_idx_dataset(Path(args.data) / f"edge{args.edge}"))
    model = lenet5()
    keys = list(model.state_dict())

    def pytorch_loop(seed: int) -> tuple[int, float]:
        """Flower's PyTorch quickstart ``train()``: DataLoader, torch.optim.SGD, cross-entropy."""
        from torch.nn import functional as F
        from torch.utils.data import DataLoader, TensorDataset

        started = time.perf_counter()
        loader = DataLoader(TensorDataset(x, y), batch_size=args.batch, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
        model.train()
        for _ in range(args.epochs):
            for images, labels in loader:
                optimizer.zero_grad()
                F.cross_entropy(model(images), labels).backward()
                optimizer.step()
        return len(y), time.perf_counter() - started

    def fedmist_loop(seed: int) -> tuple[int, float]:
        result = train_local(model, x, y, LocalConfig(epochs=args.epochs, batch_size=args.batch,
                                                      learning_rate=args.lr, seed=seed))
        return result.num_samples, result.compute_s

    train = {"pytorch": pytorch_loop, "fedmist": fedmist_loop}[args.loop]

    class Client(NumPyClient):
        def get_parameters(self, config):  # type: ignore[no-untyped-def]
            return [v.numpy() for v in model.state_dict().values()]

        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            model.load_state_dict({k: torch.from_numpy(np.asarray(a).copy()) for k, a in zip(keys, parameters)})
            rnd = int(config.get("server_round", 0))
            samples, seconds = train(args.seed + rnd)
            return self.get_parameters({}), samples, {"train_s": seconds}

    start_client(server_address=f"127.0.0.1:{args.port}", client=Client().to_client(), insecure=True,
                 max_wait_time=60)


def time_to(rounds: list[dict], target: float) -> str:
    hit = next((r for r in rounds if r["accuracy"] >= target), None)
    return f"{hit['elapsed_s']:.1f} s (r{hit['round']})" if hit else "not reached"


def round_walls(rounds: list[dict]) -> list[float]:
    """A round's wall time: from its dispatch to the next round's dispatch (the last: to its test's end), the
    same definition for both frameworks whether or not testing overlaps the next round."""
    ends = [r["dispatched_s"] for r in rounds[1:]] + [rounds[-1]["elapsed_s"]] if rounds else []
    return [end - r["dispatched_s"] for r, end in zip(rounds, ends)]


def first_hit(rounds: list[dict], target: float) -> float | None:
    return next((r["elapsed_s"] for r in rounds if r["accuracy"] >= target), None)


def overhead(rounds: list[dict]) -> float:
    return float(np.mean([wall - r["train_s"] for r, wall in zip(rounds, round_walls(rounds))]))


def report(results: dict[str, dict], args: argparse.Namespace) -> None:
    print(f"\nLeNet-5, Fashion-MNIST, {args.workers} workers x {args.edge_size} IID, {args.epochs} local epoch, "
          f"batch {args.batch}, SGD lr {args.lr} m 0.9, {args.rounds} rounds, 1 torch thread/process\n")
    head = ("framework", "final acc", "to 85%", "to 88%", "wall (1st dispatch->end)", "kB/round/worker up|down",
            "slowest training/round", "overhead/round (wall - slowest training)")
    print(" | ".join(head))
    for name, res in results.items():
        rounds = res["rounds"]
        per = args.rounds * args.workers
        down, up = res["bytes"]
        train = float(np.mean([r["train_s"] for r in rounds])) if rounds else float("nan")
        print(" | ".join([name, f"{rounds[-1]['accuracy']:.4f}" if rounds else "-", time_to(rounds, 0.85),
                          time_to(rounds, 0.88), f"{rounds[-1]['elapsed_s']:.1f} s" if rounds else "-",
                          f"{up / per / 1e3:.1f} | {down / per / 1e3:.1f}", f"{train:.2f} s",
                          f"{overhead(rounds):.3f} s"]))
    print("\nper-round accuracy:")
    for name, res in results.items():
        print(f"  {name:20s} " + " ".join(f"{r['accuracy']:.4f}" for r in res["rounds"]))
    ours = results.get("fedmist")
    for name, res in results.items():
        if name == "fedmist" or ours is None or not res["rounds"] or not ours["rounds"]:
            continue
        mine, theirs = first_hit(ours["rounds"], 0.88), first_hit(res["rounds"], 0.88)
        ratio = f"{mine / theirs:.2f}x" if mine and theirs else "n/a (88% not reached by both)"
        print(f"\nfedmist vs {name}: time to 88% {ratio} (target <= 0.8x), per-round overhead "
              f"{overhead(ours['rounds']) / overhead(res['rounds']):.2f}x (target <= 0.5x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="all", choices=["all", "fedmist", "flower", "flower-fedmist-loop",
                                                               "_flower_server", "_flower_client"])
    ap.add_argument("--loop", default="pytorch", choices=["pytorch", "fedmist"], help=argparse.SUPPRESS)
    ap.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--data", default="")
    ap.add_argument("--edge-size", type=int, default=30000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--edge", type=int, default=1)
    ap.add_argument("--result", default="")
    args = ap.parse_args()
    if args.mode.startswith("_flower"):
        {"_flower_server": flower_server, "_flower_client": flower_client}[args.mode](args)
        return
    from fedmist.data.split import split_dataset

    work = Path(tempfile.mkdtemp(prefix="fedavg-vs-flower-"))
    data = Path(args.data) if args.data else work / "data"
    if not args.data:
        split_dataset(args.source, data, public=0, edges=[args.edge_size] * args.workers, seed=args.seed)
    runners = {"fedmist": run_fedmist, "flower": run_flower,
               "flower-fedmist-loop": lambda d, w, a: run_flower(d, w, a, loop="fedmist")}
    chosen = list(runners) if args.mode == "all" else [args.mode]
    results = {}
    for name in chosen:
        started = time.monotonic()
        results[name] = runners[name](data, work / name if (work / name).mkdir() is None else work, args)
        print(f"{name}: exit {results[name]['exit']} in {time.monotonic() - started:.1f} s (work dir {work})",
              file=sys.stderr)
    report(results, args)


if __name__ == "__main__":
    main()
