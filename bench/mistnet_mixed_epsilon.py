"""Benchmark: the demo MistNet job with edges of different epsilons (issue 17), next to uniform ones.

    .venv/bin/python bench/mistnet_mixed_epsilon.py [--edges 25000,25000] [--workdir bench-out/mixed-epsilon]

Three whole `fedmist run`s of examples/mnist-mistnet in one invocation, on the same data and pretrained model:
uniform epsilon 1, uniform epsilon 4, and mixed (aggregator 4 = the job's floor, edge1 1, edge2 4: each edge
applies the stricter of its own epsilon and the floor, and the cloud debiases each edge's records with that
edge's own flip probability). Prints test accuracy, the epsilon each edge applied as the aggregator recorded it
from the edge's records (so a run whose trainers lack the edge-side rule shows edge1 at 4, not 1), whole-job wall
time and cloud training time. Data and the pretrained model are made once, as in bench/mistnet_mnist.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mnist-mistnet" / "job.yaml"
# label -> (aggregator epsilon = the floor, edge1's, edge2's)
RUNS = {"uniform-1": ("1", "1", "1"), "uniform-4": ("4", "4", "4"), "mixed-1-4": ("4", "1", "4")}


def fedmist(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedmist", *args], capture_output=True, text=True, cwd=REPO)


def prepare(root: Path, edges: str) -> tuple[Path, Path]:
    """The split (public 10k, the edges, the 10k test set) and the default pretrained LeNet-5, made once."""
    data, pretrained = root / "data", root / "pretrained"
    if not (data / "test").exists():
        done = fedmist("data", "split", "--out", str(data), "--public", "10000", "--edges", edges, "--seed", "0")
        if done.returncode:
            sys.exit(done.stderr)
    if not (pretrained / "lenet5.pth").exists():
        done = fedmist("pretrain", "--data", str(data / "public"), "--out", str(pretrained / "lenet5.pth"))
        if done.returncode:
            sys.exit(done.stderr)
    return data, pretrained


def job_file(root: Path, label: str, epsilons: tuple[str, str, str]) -> Path:
    """The example job with the aggregator's and each edge's own epsilon."""
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    containers = [job["spec"]["aggregationWorker"]["template"]["spec"]["containers"][0]] + [
        w["template"]["spec"]["containers"][0] for w in job["spec"]["trainingWorkers"]]
    for container, epsilon in zip(containers, epsilons):
        for item in container["env"]:
            if item["name"] == "epsilon":
                item["value"] = epsilon
    path = root / f"job-{label}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def run(root: Path, data: Path, pretrained: Path, label: str, epsilons: tuple[str, str, str]) -> dict:
    workdir = root / f"run-{label}"
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh job each time: no stored uploads to resume from
    started = time.monotonic()
    done = fedmist("run", "-f", str(job_file(root, label, epsilons)), "--path-map", f"/data={data}",
                   "--path-map", f"/pretrained={pretrained}", "--path-map", f"/model={root / 'model' / label}",
                   "--workdir", str(workdir), "--no-progress")
    wall = time.monotonic() - started
    status = json.loads((workdir / "status.json").read_text())
    if done.returncode:
        sys.exit(f"run {label} failed: {status.get('conditions')}\n{done.stderr[-2000:]}")
    return {"label": label, "floor": epsilons[0], "configured": {"edge1": epsilons[1], "edge2": epsilons[2]},
            "applied": {name: w.get("epsilon", "?") for name, w in status["workers"].items()},
            "accuracy": status["metrics"]["accuracy"], "wall_s": wall, "cloud_train_s": status["metrics"]["train_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", default="25000,25000", help="images per edge, as for `fedmist data split`")
    parser.add_argument("--workdir", default=str(REPO / "bench-out" / "mixed-epsilon"))
    args = parser.parse_args()
    root = Path(args.workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    data, pretrained = prepare(root, args.edges)
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    rows = [run(root, data, pretrained, label, epsilons) for label, epsilons in RUNS.items()]
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("| run | aggregator (floor) | edge1 / edge2 configured | edge1 / edge2 applied | test accuracy "
          "| job wall s | cloud train s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['label']} | {row['floor']} | {row['configured']['edge1']} / {row['configured']['edge2']} "
              f"| {row['applied'].get('edge1')} / {row['applied'].get('edge2')} | {row['accuracy']:.4f} "
              f"| {row['wall_s']:.1f} | {row['cloud_train_s']:.1f} |")
    (root / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
