"""MistNet at population scale (issue 20, point 5): 100 edges uploading to one aggregator at once, against 2 edges
with the same total images, in one invocation.

The aggregator is the real worker process (``fedmist worker aggregate``, the env contract the launcher gives
it, plain ws on loopback). The edges are real MistNet trainers (``run_mistnet_trainer``, each with its own
dataset, state folder, privacy ledger and websocket session) multiplexed as threads in a few host processes,
so 100 edges do not need 100 torch imports on 2 cores. All edges start together; figures:

- records/s: the job's images over the upload phase (start until the slowest edge's upload is confirmed; it
  includes each edge's own extraction, the same total work in both configurations);
- the slowest and the fastest edge's finish time (is any edge starved?);
- the aggregator's peak RSS (its own VmHWM, from its report), which must not grow with the number of edges, and
  its highest RSS during the upload phase (sampled every 20 ms; VmHWM also covers start-up and training).

    python bench/mistnet_population.py [--images 20000] [--edges 2,100] [--hosts 4]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fedmist.launch.local import free_port

REPO = Path(__file__).resolve().parents[1]


def fedmist(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "fedmist", *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        sys.exit(done.stderr[-2000:])


class RssWatch(threading.Thread):
    """The highest VmRSS of process ``pid`` while it runs, sampled every 20 ms: the aggregator's memory during
    the upload phase alone (its VmHWM also covers start-up and training)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def manifest(work: Path, edges: int) -> Path:
    docs = [f"""apiVersion: sedna.io/v1alpha1
kind: Dataset
metadata: {{name: d{i}}}
spec: {{url: /data/edge{i}, format: idx, nodeName: edge{i}}}
""" for i in range(1, edges + 1)]
    docs.append("""apiVersion: sedna.io/v1alpha1
kind: Model
metadata: {name: pre}
spec: {url: /pre/lenet5.pth, format: pth}
""")
    docs.append("""apiVersion: sedna.io/v1alpha1
kind: Model
metadata: {name: out}
spec: {url: /model/lenet5.pth, format: pth}
""")
    trainers = "".join(f"""    - dataset: {{name: d{i}}}
      template:
        spec:
          nodeName: edge{i}
          containers:
            - {{image: fedmist/worker, name: t, env: [{{name: epsilon, value: "2"}}]}}
""" for i in range(1, edges + 1))
    docs.append(f"""apiVersion: sedna.io/v1alpha1
kind: FederatedLearningJob
metadata: {{name: population}}
spec:
  pretrainedModel: {{name: pre}}
  aggregationWorker:
    model: {{name: out}}
    template:
      spec:
        nodeName: cloud
        containers:
          - image: fedmist/worker
            name: agg
            env:
              - {{name: aggregation_algorithm, value: mistnet}}
              - {{name: cut_layer, value: "3"}}
              - {{name: epsilon, value: "2"}}
              - {{name: epochs, value: "1"}}
              - {{name: round_timeout, value: "600"}}
              - {{name: TEST_DATASET_URL, value: /data/test}}
  trainingWorkers:
{trainers}""")
    path = work / f"job-{edges}.yaml"
    path.write_text("---\n".join(docs))
    return path


def run(work: Path, data: Path, edges: int, hosts: int) -> dict:
    from fedmist.api import load_job

    run_dir = work / f"run-{edges}"
    job = load_job([manifest(work, edges)], path_map={"/data": str(data), "/pre": str(work / "pre"),
                                                      "/model": str(run_dir / "model")}).resolved
    port, token = free_port(), secrets.token_hex(16)
    base = {k: v for k, v in os.environ.items() if k.lower() not in ("epochs", "seed", "epsilon")}
    base.update(PYTHONPATH=str(REPO / "src"), OMP_WAIT_POLICY="PASSIVE", FEDMIST_TOKEN=token,
                FEDMIST_BIND_HOST="127.0.0.1", PYTHONUNBUFFERED="1")

    def env(worker, threads: int) -> dict[str, str]:
        out = {**base, **job.worker_env(worker, agg_ip="127.0.0.1", agg_port=port), "AGG_BIND_PORT": str(port),
               "FEDMIST_STATUS_FILE": str(run_dir / "reports" / f"{worker.name}.json"),
               "FEDMIST_STATE_DIR": str(run_dir / "state" / worker.name), "FEDMIST_THREADS": str(threads)}
        return out

    (run_dir / "reports").mkdir(parents=True, exist_ok=True)
    agg_log = open(run_dir / "aggregator.log", "w")  # noqa: SIM115
    aggregator = subprocess.Popen([sys.executable, "-m", "fedmist", "worker", "aggregate"],
                                  env=env(job.aggregator, 1), stdout=agg_log, stderr=subprocess.STDOUT, cwd=REPO)
    groups = [job.trainers[i::hosts] for i in range(min(hosts, edges))]
    go = run_dir / "go"
    procs = []
    for index, group in enumerate(groups):
        spec = run_dir / f"host{index}.json"
        spec.write_text(json.dumps({"go": str(go), "envs": [env(w, 1) for w in group]}))
        procs.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--edge-host", str(spec)],
                                      env=base, cwd=REPO, stdout=subprocess.DEVNULL,
                                      stderr=open(run_dir / f"host{index}.log", "w")))  # noqa: SIM115
    deadline = time.time() + 600
    while not (all(Path(f"{run_dir / f'host{i}.json'}.ready").exists() for i in range(len(procs)))
               and _listening(port)):  # hosts have imported torch, the aggregator listens: start together
        if time.time() > deadline or aggregator.poll() is not None or any(p.poll() for p in procs):
            sys.exit(f"start-up failed: see {run_dir}")
        time.sleep(0.2)
    go.write_text(str(time.time() + 0.5))
    watch = RssWatch(aggregator.pid)
    watch.start()
    finishes: list[float] = []
    for index, proc in enumerate(procs):
        if proc.wait(1800):
            sys.exit(f"edge host {index} failed: see {run_dir / f'host{index}.log'}")
        finishes += json.loads((run_dir / f"host{index}.json.out").read_text())
    watch.stop.set()
    if aggregator.wait(1800):
        sys.exit(f"aggregator failed: see {run_dir / 'aggregator.log'}")
    report = json.loads((run_dir / "reports" / f"{job.aggregator.name}.json").read_text())
    total = sum(s for _, s in finishes)
    slowest = max(t for t, _ in finishes)
    return {"edges": edges, "images": total, "upload_s": round(slowest, 2), "records_per_s": round(total / slowest),
            "slowest_edge_s": round(slowest, 2), "fastest_edge_s": round(min(t for t, _ in finishes), 2),
            "aggregator_peak_rss_mb": report.get("peak_rss_mb"),
            "aggregator_upload_rss_mb": round(watch.peak_kib / 1024, 1),
            "accuracy": (report.get("metrics") or {}).get("accuracy")}


def edge_host(spec_path: str) -> None:
    """Run this host's edges as threads, all starting at the shared start time; write (finish s, samples)."""
    import torch

    from fedmist.worker.context import WorkerContext
    from fedmist.worker.mistnet.trainer import run_mistnet_trainer

    torch.set_num_threads(1)
    spec = json.loads(Path(spec_path).read_text())
    Path(spec_path + ".ready").write_text("")
    go = Path(spec["go"])
    while not go.exists() or not go.read_text():
        time.sleep(0.05)
    spec["start"] = float(go.read_text())
    results: list[tuple[float, int]] = []
    errors: list[str] = []

    def edge(env: dict[str, str]) -> None:
        try:
            ctx = WorkerContext.from_env("trainer", env)
            time.sleep(max(0.0, spec["start"] - time.time()))
            figures = run_mistnet_trainer(ctx)
            results.append((time.time() - spec["start"], int(figures["samples"])))
        except BaseException as exc:  # noqa: BLE001 - reported, the bench fails
            errors.append(f"{env.get('WORKER_NAME')}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=edge, args=(e,)) for e in spec["envs"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("\n".join(errors))
    Path(spec_path + ".out").write_text(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000, help="total edge images, split evenly")
    parser.add_argument("--edges", default="2,100")
    parser.add_argument("--hosts", type=int, default=4, help="processes the edges are multiplexed in")
    parser.add_argument("--edge-host", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.edge_host:
        edge_host(args.edge_host)
        return
    work = Path(tempfile.mkdtemp(prefix="population-"))
    counts = [int(e) for e in args.edges.split(",")]
    datasets = {}
    for edges in counts:
        data = work / f"data-{edges}"
        fedmist("data", "split", "--out", str(data), "--public", "2000", "--edges",
                ",".join([str(args.images // edges)] * edges), "--seed", "0")
        datasets[edges] = data
    fedmist("pretrain", "--data", str(datasets[counts[0]] / "public"), "--out", str(work / "pre" / "lenet5.pth"),
            "--epochs", "2")
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cores; work {work}", flush=True)
    rows = []
    for edges in counts:
        load = os.getloadavg()[0]
        rows.append({**run(work, datasets[edges], edges, args.hosts), "load_1min": round(load, 2)})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| edges | images | records/s | slowest edge | fastest edge | aggregator peak RSS (in upload) | accuracy "
          "| load |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['edges']} | {r['images']:,} | {r['records_per_s']:,} | {r['slowest_edge_s']} s | "
              f"{r['fastest_edge_s']} s | {r['aggregator_peak_rss_mb']} MiB ({r['aggregator_upload_rss_mb']} MiB) | "
              f"{r['accuracy']} | {r['load_1min']} |")


if __name__ == "__main__":
    main()
