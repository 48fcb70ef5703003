"""Benchmark: the demo MistNet job (examples/mnist-mistnet) end to end through the real CLI, per epsilon.

    .venv/bin/python bench/mistnet_mnist.py [--epsilons inf,2,1] [--workdir bench-out/mistnet]

Prints, per run: test accuracy, whole-job wall time (from `fedmist run` to its exit), edge compute seconds
and bytes uploaded per worker and per image, and the aggregator's peak RSS; then the same job with 5x less
edge data, to show the aggregator's memory does not grow with the uploaded samples. Peers: Plato's
compressed binarized upload (467 B/image, measured on the same cut) and float32 features (4 B/feature).
Data and the pretrained model are made once with `fedmist data split` and `fedmist pretrain`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mnist-mistnet" / "job.yaml"
PLATO_BYTES_PER_IMAGE = 467  # Plato 1.0, binarized + compressed features at LeNet-5 cut 3 (issue 2)


def fedmist(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedmist", *args], capture_output=True, text=True, cwd=REPO)


def prepare(root: Path, edges: str, name: str) -> Path:
    data = root / name
    if not (data / "test").exists():
        done = fedmist("data", "split", "--out", str(data), "--public", "10000", "--edges", edges, "--seed", "0")
        if done.returncode:
            sys.exit(done.stderr)
    return data


def job_file(root: Path, epsilon: str) -> Path:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    containers = [job["spec"]["aggregationWorker"]["template"]["spec"]["containers"][0]] + [
        w["template"]["spec"]["containers"][0] for w in job["spec"]["trainingWorkers"]]
    for container in containers:
        for item in container["env"]:
            if item["name"] == "epsilon":
                item["value"] = epsilon
    path = root / f"job-eps-{epsilon}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def run(root: Path, data: Path, pretrained: Path, epsilon: str, label: str) -> dict:
    workdir = root / f"run-{label}"
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh job each time: no stored uploads to resume from
    started = time.monotonic()
    done = fedmist("run", "-f", str(job_file(root, epsilon)), "--path-map", f"/data={data}",
                   "--path-map", f"/pretrained={pretrained}", "--path-map", f"/model={root / 'model' / label}",
                   "--workdir", str(workdir), "--no-progress")
    wall = time.monotonic() - started
    status = json.loads((workdir / "status.json").read_text())
    if done.returncode:
        sys.exit(f"run {label} failed: {status.get('conditions')}\n{done.stderr[-2000:]}")
    workers = status["workers"]
    samples = sum(w["samples"] for w in workers.values())
    bytes_up = sum(w["bytes_up"] for w in workers.values())
    return {
        "label": label, "epsilon": epsilon, "accuracy": status["metrics"]["accuracy"], "wall_s": wall,
        "cloud_train_s": status["metrics"]["train_s"],
        "edge_compute_s": {n: w["compute_s"] for n, w in workers.items()},
        "edge_samples": {n: w["samples"] for n, w in workers.items()},
        "bytes_up": {n: w["bytes_up"] for n, w in workers.items()},
        "bytes_per_image": bytes_up / samples, "samples": samples,
        "agg_peak_rss_mb": status["aggregator"]["peak_rss_mb"],
        "r": status["metrics"]["privacy"]["features_per_sample"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", default="inf,2,1")
    parser.add_argument("--workdir", default=str(REPO / "bench-out" / "mistnet"))
    args = parser.parse_args()
    root = Path(args.workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    data = prepare(root, "25000,25000", "data")
    small = prepare(root, "5000,5000", "data-small")
    pretrained = root / "pretrained"
    if not (pretrained / "lenet5.pth").exists():
        done = fedmist("pretrain", "--data", str(data / "public"), "--out", str(pretrained / "lenet5.pth"))
        if done.returncode:
            sys.exit(done.stderr)

    rows = [run(root, data, pretrained, eps, f"eps-{eps}") for eps in args.epsilons.split(",")]
    rows.append(run(root, small, pretrained, "2", "eps-2-small"))

    print("| run | epsilon | edge images | test accuracy | job wall s | cloud train s | edge compute s (per worker) "
          "| bytes up per worker | bytes/image | vs Plato 467 B | vs float32 | aggregator peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        compute = ", ".join(f"{n} {s:.2f}" for n, s in row["edge_compute_s"].items())
        up = ", ".join(f"{n} {b / 1e6:.2f} MB" for n, b in row["bytes_up"].items())
        float_bytes = row["r"] * 4
        print(f"| {row['label']} | {row['epsilon']} | {row['samples']} | {row['accuracy']:.4f} | {row['wall_s']:.1f} "
              f"| {row['cloud_train_s']:.1f} | {compute} | {up} | {row['bytes_per_image']:.1f} "
              f"| {PLATO_BYTES_PER_IMAGE / row['bytes_per_image']:.2f}x less | "
              f"{float_bytes / row['bytes_per_image']:.1f}x less | {row['agg_peak_rss_mb']:.0f} |")
    (root / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
