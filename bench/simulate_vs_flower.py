"""``fedmist simulate`` against Flower's simulation engine (Ray), the same job in one invocation (issue 20).

LeNet-5 on Fashion-MNIST's 60k training images, IID over N virtual clients, a fraction of them per round,
1 local epoch, batch 32, momentum SGD; the global model tested on the 10k test set after every round. Both
sides train with the same loop (fedmist's ``train_local``), draw the same IID partition (fedmist's
``partition``, seed 0), keep the dataset loaded once per worker process, and use one torch thread per worker
and as many workers as cores, so the difference is the engine: dispatch, serialisation, aggregation,
sampling. Flower: ``flwr.simulation.run_simulation`` with its ``FedAvg`` strategy (``fraction_fit``,
``evaluate_fn`` on the server), ``client_resources = {num_cpus: 1}``.

Figures per run: seconds per round (wall time between two rounds' test results, so training + aggregation +
test; median over rounds), time to the target accuracy (from the first round's dispatch), peak RSS of the
whole process tree (the CLI or Flower driver and every process it started, Ray's included; polled every
0.2 s), and the whole run's wall time.

    pip install -e '.[bench]'     # flwr[simulation] (Ray)
    python bench/simulate_vs_flower.py --clients 100,1000 --fraction 0.1 --rounds 50,15
    python bench/simulate_vs_flower.py --clients 10000 --fraction 0.01 --rounds 10 --no-flower
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


class TreeRss(threading.Thread):
    """Peak of the summed RSS of a process and all its descendants (Ray's daemons are the driver's children)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak_mb, self.peak_pss_mb, self.stop = pid, 0.0, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                root = psutil.Process(self.root)
                procs = [root, *root.children(recursive=True)]
                total = pss = 0
                for proc in procs:
                    try:
                        info = proc.memory_full_info()  # pss: shared pages (forked, libraries) counted once
                        total, pss = total + info.rss, pss + info.pss
                    except psutil.Error:
                        pass
                self.peak_mb = max(self.peak_mb, total / 2**20)
                self.peak_pss_mb = max(self.peak_pss_mb, pss / 2**20)
            except psutil.Error:
                pass
            self.stop.wait(0.2)


def measured(cmd: list[str], out: Path) -> dict:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(out.with_suffix(".log"), "w"),
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    meter = TreeRss(proc.pid)
    meter.start()
    code = proc.wait()
    meter.stop.set()
    meter.join()
    if code != 0:
        raise SystemExit(f"{cmd[:4]} failed ({code}); see {out.with_suffix('.log')}")
    return {"wall_s": time.monotonic() - started, "peak_tree_rss_mb": meter.peak_mb,
            "peak_tree_pss_mb": meter.peak_pss_mb}


def job_yaml(args: argparse.Namespace, work: Path, rounds: int) -> Path:
    path = work / "job.yaml"
    env = {"aggregation_algorithm": args.algorithm, "exit_round": str(rounds), "fraction_fit": str(args.fraction),
           "min_clients": "1", "seed": "0", "TEST_DATASET_URL": str(FMNIST / "t10k")}
    if args.target:
        env["target_accuracy"] = str(args.target)
    trainer = {"epochs": "1", "batch_size": str(args.batch), "learning_rate": str(args.lr)}
    as_env = lambda d: "\n".join(f"              - {{name: {k}, value: \"{v}\"}}" for k, v in d.items())  # noqa: E731
    path.write_text(f"""apiVersion: sedna.io/v1alpha1
kind: Dataset
metadata: {{name: fmnist}}
spec: {{url: {FMNIST / 'train'}, format: idx, nodeName: edge1}}
---
apiVersion: sedna.io/v1alpha1
kind: Model
metadata: {{name: out}}
spec: {{url: {work / 'model.pth'}, format: pth}}
---
apiVersion: sedna.io/v1alpha1
kind: FederatedLearningJob
metadata: {{name: bench-sim}}
spec:
  aggregationWorker:
    model: {{name: out}}
    template:
      spec:
        nodeName: cloud
        containers:
          - image: fedmist/worker
            name: agg
            env:
{as_env(env)}
  trainingWorkers:
    - dataset: {{name: fmnist}}
      template:
        spec:
          nodeName: edge1
          containers:
            - image: fedmist/worker
              name: train
              env:
{as_env(trainer).replace('              -', '                -')}
""")
    return path


def run_fedmist(args: argparse.Namespace, clients: int, rounds: int, work: Path) -> dict:
    run = work / f"fedmist-{clients}"
    cmd = [sys.executable, "-m", "fedmist", "simulate", "-f", str(job_yaml(args, work, rounds)), "--clients", str(clients),
           "--workdir", str(run), "--workers", str(args.workers), "--partition", args.partition, "--alpha", str(args.alpha)]
    figures = measured(cmd, run)
    history = json.loads((run / "status.json").read_text())["metrics"]["history"]
    ends = [h["elapsed_s"] for h in history]
    return {**figures, **summarize(ends, [h["accuracy"] for h in history], args.target)}


def summarize(ends: list[float], accuracy: list[float], target: float | None) -> dict:
    """Rounds' end times (seconds since the first dispatch) and accuracies -> the table's figures."""
    per_round = [b - a for a, b in zip([0.0, *ends[:-1]], ends)]
    hit = next((t for t, acc in zip(ends, accuracy) if target and acc >= target), None)
    return {"rounds": len(ends), "s_per_round": statistics.median(per_round), "first_round_s": per_round[0],
            "time_to_target_s": hit, "final_accuracy": accuracy[-1]}


def run_flower(args: argparse.Namespace, clients: int, rounds: int, work: Path) -> dict:
    out = work / f"flower-{clients}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--flower-child", str(clients), "--out", str(out),
           "--rounds", str(rounds), "--fraction", str(args.fraction), "--lr", str(args.lr),
           "--batch", str(args.batch), "--target", str(args.target), "--workers", str(args.workers)]
    figures = measured(cmd, out)
    rounds = json.loads(out.read_text())
    start = rounds[0]["t"]  # round 0: the initial model's test, just before the first dispatch
    ends = [r["t"] - start for r in rounds[1:]]
    return {**figures, **summarize(ends, [r["accuracy"] for r in rounds[1:]], args.target)}


def flower_child(args: argparse.Namespace) -> None:
    """Flower's simulation engine on the same job; records (time, accuracy) at every server-side test."""
    import numpy as np
    import torch
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    from fedmist.data.idx import load_idx_dataset
    from fedmist.models.lenet import lenet5
    from fedmist.models.local_train import LocalConfig, as_tensors, evaluate, train_local
    from fedmist.simulate.partition import partition

    clients, lr, batch = int(args.flower_child), args.lr, args.batch

    def data() -> tuple:
        # once per Ray worker process, as fedmist's pool workers load it once: a process-wide module, because
        # a closure's dict travels with the ClientApp and may be a fresh copy for every message
        cache = sys.modules.setdefault("_flower_bench_cache", types.ModuleType("_flower_bench_cache")).__dict__
        if "x" not in cache:
            print(f"flower-bench: pid {os.getpid()} loads the dataset", file=sys.stderr, flush=True)
            images, labels = load_idx_dataset(FMNIST / "train")
            cache.update(x=images, y=labels, parts=partition(labels, clients, "iid", seed=0))
        return cache["x"], cache["y"], cache["parts"]

    def weights(model: torch.nn.Module) -> list:
        return [v.detach().numpy().copy() for v in model.state_dict().values()]

    def load(model: torch.nn.Module, arrays: list) -> None:
        model.load_state_dict({k: torch.from_numpy(np.asarray(a)) for k, a in zip(model.state_dict(), arrays)})

    class Client(NumPyClient):
        def __init__(self, cid: int) -> None:
            self.cid = cid

        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            torch.set_num_threads(1)
            x, y, parts = data()
            rows = parts.of(self.cid)
            model = lenet5()
            load(model, parameters)
            xs, ys = as_tensors(x[rows], y[rows])
            result = train_local(model, xs, ys, LocalConfig(epochs=1, batch_size=batch, learning_rate=lr,
                                                            seed=int(config.get("server_round", 0)) * 7919 + self.cid))
            return weights(model), result.num_samples, {}

    def client_fn(context: Context):  # type: ignore[no-untyped-def]
        return Client(int(context.node_config["partition-id"])).to_client()

    test = as_tensors(*load_idx_dataset(FMNIST / "t10k"))
    torch.manual_seed(0)
    model = lenet5()
    log: list[dict] = []

    def central(server_round: int, arrays: list, config: dict) -> tuple[float, dict]:
        if log and args.target and log[-1]["accuracy"] >= args.target:
            return log[-1]["loss"], {"accuracy": log[-1]["accuracy"]}  # stopped: rounds left are empty
        load(model, arrays)
        metrics = evaluate(model, *test)
        log.append({"round": server_round, "t": time.monotonic(), **metrics})
        Path(args.out).write_text(json.dumps(log))
        return metrics["loss"], {"accuracy": metrics["accuracy"]}

    class StopAtTarget(FedAvg):
        """Flower has no target accuracy: once the test reaches it, the rounds left sample no clients (no
        training, no test), as fedmist's ``target_accuracy`` ends the job; the time to target is read from
        the log either way, this only keeps the round cap from costing minutes."""

        def configure_fit(self, server_round, parameters, client_manager):  # type: ignore[no-untyped-def]
            if log and args.target and log[-1]["accuracy"] >= args.target:
                return []
            return super().configure_fit(server_round, parameters, client_manager)

    strategy = StopAtTarget(fraction_fit=args.fraction, fraction_evaluate=0.0, min_fit_clients=1, min_evaluate_clients=0,
                      min_available_clients=clients, evaluate_fn=central,
                      initial_parameters=ndarrays_to_parameters(weights(model)))

    def server_fn(context: Context) -> ServerAppComponents:
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=int(args.rounds)))

    torch.set_num_threads(args.workers)
    run_simulation(server_app=ServerApp(server_fn=server_fn), client_app=ClientApp(client_fn=client_fn),
                   num_supernodes=clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": args.workers, "include_dashboard": False}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="100,1000", help="population sizes, comma-separated")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--rounds", default="50,15", help="round cap per population size (one value: for all)")
    parser.add_argument("--partition", default="iid", help="fedmist's partition (iid, dirichlet, shards)")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=32, help="local batch size, both engines")
    parser.add_argument("--algorithm", default="fedavg")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-flower", action="store_true", help="fedmist only (the 10,000-client run)")
    parser.add_argument("--flower-child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flower_child:
        flower_child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="simbench-"))
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cores; work {work}", flush=True)
    rows = []
    sizes = [int(c) for c in args.clients.split(",")]
    caps = [int(r) for r in args.rounds.split(",")]
    caps = caps if len(caps) == len(sizes) else [caps[0]] * len(sizes)
    for clients, rounds in zip(sizes, caps):
        engines = [("fedmist", run_fedmist)] + ([] if args.no_flower else [("flower", run_flower)])
        for name, runner in engines:
            load = os.getloadavg()[0]
            figures = runner(args, clients, rounds, work)
            rows.append({"engine": name, "clients": clients, "load_1min": round(load, 2), **figures})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| engine | clients | per round | rounds run | time to {args.target} | final acc | peak RSS (tree) "
          f"| PSS (tree) | wall | load |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        hit = f"{r['time_to_target_s']:.1f} s" if r["time_to_target_s"] else f"not in {r['rounds']} rounds"
        print(f"| {r['engine']} | {r['clients']:,} | {r['s_per_round']:.2f} s | {r['rounds']} | {hit} | "
              f"{r['final_accuracy']:.4f} | {r['peak_tree_rss_mb']:.0f} MiB | {r['peak_tree_pss_mb']:.0f} MiB | {r['wall_s']:.0f} s | {r['load_1min']} |")


if __name__ == "__main__":
    main()
