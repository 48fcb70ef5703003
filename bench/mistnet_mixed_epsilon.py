"""Benchmark: the demo MistNet job with edges of different epsilons (issue 17), next to uniform ones.

    .venv/bin/python bench/mistnet_mixed_epsilon.py [--edges 25000,25000] [--workdir bench-out/mixed-epsilon]

Three whole `fedmist run`s of examples/mnist-mistnet in one invocation, on the same data and pretrained model:
uniform epsilon 1, uniform epsilon 4, and mixed (aggregator 4 = the job's floor, edge1 1, edge2 4: each edge
applies the stricter of its own epsilon and the floor, and the cloud debiases each edge's records with that
edge's own flip probability). Prints test accuracy, the epsilon each edge applied as the aggregator recorded it
from the edge's records (so a run whose trainers lack the edge-side rule shows edge1 at 4, not 1), whole-job wall
time and cloud training time. Data and the pretrained model are made once, as in bench/mistnet_mnist.py.

``--ablation`` then trains the cloud in process (no network) on the same mixed records (edge1's bits at
epsilon 1, edge2's at 4, drawn here), debiased per edge as the aggregator does, or with one epsilon for all
records (the floor 4, or 1), as the cloud did before it learned each edge's epsilon.
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
    parser.add_argument("--ablation", action="store_true", help="also compare per-edge and one-epsilon debiasing")
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
    if args.ablation:
        ablation(data, pretrained)


def ablation(data: Path, pretrained: Path) -> None:
    """Cloud training in process on mixed records (edge1 at epsilon 1, edge2 at 4): per-edge debiasing against
    one epsilon for every record; the job's recipe (6 epochs, batch 256, peak lr 0.2)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `fedmist` sets it: idle OpenMP threads sleep
    import numpy as np
    import torch

    from fedmist.data.idx import load_idx_dataset
    from fedmist.models.cloud_train import InMemoryPackedSource, evaluate_cloud, train_cloud
    from fedmist.models.extract import channel_features, extract_bits
    from fedmist.models.registry import build_model
    from fedmist.models.split import split_model
    from fedmist.models.weights import load_weights

    torch.set_num_threads(2)
    edges = [load_idx_dataset(str(data / name)) for name in ("edge1", "edge2")]
    test_x, test_y = load_idx_dataset(str(data / "test"))
    state = load_weights(str(pretrained / "lenet5.pth"))
    model = build_model("lenet5")
    model.load_state_dict(state)
    edge, _ = split_model(model, 3)
    bits = [extract_bits(edge, images, eps, seed=i)[0] for i, ((images, _), eps) in enumerate(zip(edges, (1.0, 4.0)))]
    shape = extract_bits(edge, edges[0][0][:1], 1.0, seed=0)[1]
    origins = np.concatenate([np.full(len(b), i) for i, b in enumerate(bits)])
    source = InMemoryPackedSource(np.concatenate(bits), np.concatenate([labels for _, labels in edges]), shape,
                                  origins=origins)
    test_bits = channel_features(edge, test_x)
    print("| debiasing of the mixed records (edge1 eps 1, edge2 eps 4) | test accuracy | cloud train s |")
    print("|---|---|---|")
    for label, epsilon in (("per edge (1 and 4)", [1.0, 4.0]), ("one epsilon: the floor 4", 4.0),
                           ("one epsilon: 1", 1.0)):
        model.load_state_dict(state)
        _, cloud = split_model(model, 3)
        result = train_cloud(cloud, source, epochs=6, batch_size=256, max_lr=0.2, epsilon=epsilon, seed=0)
        test = evaluate_cloud(cloud, test_bits, test_y, shape, epsilon, True,
                              weights=[len(b) for b in bits] if isinstance(epsilon, list) else None)
        print(f"| {label} | {test['accuracy']:.4f} | {result['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
