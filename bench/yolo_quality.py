"""Detection quality against centralized training, same data and compute: YOLO with FedAvg and MistNet.

Synthetic COCO128-layout data (``fedmist data synth-detection``): a public set, which only pretrains the common
starting model, and a pool of training images that every run trains on, plus a validation set. yolov5n at
320 px. Every run starts from the same pretrained file and makes the same number of passes (``--epochs``) over
the same pool (the common start is pretrained plainly, without the bit channel, so that it favours no
algorithm):

- centralized: the pool in one process, the whole detector trained by the shared loop that FedAvg edges run
  (``fedmist.models.detect_images.train_on_images``: ultralytics' loss and augmentation, AdamW, one warm-up +
  cosine schedule);
- FedAvg, 2 edges, IID (pool split alternately) and non-IID by class (images sorted by their main class, each
  edge gets one half): a real ``fedmist run`` job, ``exit_round = epochs``, one local epoch per round;
- MistNet, 2 edges, eps inf / 100 / 2 (``--epsilons``) at each cut of ``--cuts``: a real ``fedmist run`` job,
  the cloud trains the post-cut layers for ``epochs`` epochs on the edges' bits.

mAP50 / mAP50-95 are on the validation set (MistNet through the clean bit channel). Prints a markdown table and
writes results.json in the work folder. Run it under ``nice``; the figures depend on the load only in time.

    nice -n 10 .venv/bin/python bench/yolo_quality.py --images 128 --epochs 8
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--work", default="/tmp/fedmist-yolo-quality", help="where sets, weights and jobs go")
    ap.add_argument("--model", default="yolov5n")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--classes", default="1,8,7", help="Fashion-MNIST classes in the sets (trouser, bag, sneaker)")
    ap.add_argument("--images", type=int, default=128, help="training images in the pool (all runs)")
    ap.add_argument("--val", type=int, default=64)
    ap.add_argument("--public", type=int, default=128, help="public images that pretrain the common start")
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=8, help="passes over the pool, for every run")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--fedavg-lr", type=float,
                    help="the FedAvg edges' peak lr (default: --lr); the run is named with it when it differs")
    ap.add_argument("--fedavg-batch", type=int,
                    help="the FedAvg edges' batch (default: --batch); e.g. batch / 2 makes 2 edges take as many "
                         "optimizer steps per epoch as centralized training at --batch; named with it")
    ap.add_argument("--seeds", default="0",
                    help="comma list of seeds: each run is repeated per seed (shuffling, augmentation, noise); runs "
                         "of a seed other than 0 are named with -s<seed>, and the table adds mean and spread per run")
    ap.add_argument("--cuts", default="4", help="MistNet cut layers; eps inf runs at each, the others at the first")
    ap.add_argument("--epsilons", default="inf,100,2")
    ap.add_argument("--runs", default="central,fedavg-iid,fedavg-noniid,mistnet",
                    help="which runs (comma list of central, fedavg-iid, fedavg-noniid, mistnet)")
    ap.add_argument("--results", default="results.json",
                    help="results file in --work; runs in parallel processes each write their own, and the table "
                         "is printed over every results*.json there")
    ap.add_argument("--rescore", action="store_true",
                    help="only evaluate the pretrained file and every job's saved model again (rescored.json)")
    return ap.parse_args()


def fedmist(*args: str, timeout: float = 7200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedmist", *args], capture_output=True, text=True, timeout=timeout)


def make_sets(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """The public set, the pool (+ validation) and the pool split two ways over 2 edges (links, not copies)."""
    sets = {"public": work / "public", "pool": work / "pool"}
    for name, train, val, seed in (("public", args.public, 0, 3), ("pool", args.images, args.val, 1)):
        if not (sets[name] / "data.yaml").is_file():
            made = fedmist("data", "synth-detection", "--source", args.fmnist, "--out", str(sets[name]), "--train",
                           str(train), "--val", str(val), "--size", str(args.imgsz), "--seed", str(seed),
                           "--classes", args.classes)
            if made.returncode:
                raise SystemExit(made.stderr)
    images = sorted((sets["pool"] / "images" / "train").glob("*.jpg"))
    main_class = [_main_class(sets["pool"] / "labels" / "train" / f"{p.stem}.txt") for p in images]
    iid = [images[0::2], images[1::2]]
    by_class = [p for _, p in sorted(zip(main_class, images), key=lambda t: (t[0], t[1].name))]
    half = len(by_class) // 2
    for split, parts in (("iid", iid), ("noniid", [by_class[:half], by_class[half:]])):
        for edge, part in enumerate(parts, 1):
            root = work / split / str(edge) / "COCO"
            sets[f"{split}{edge}"] = root
            if root.exists():
                continue
            for sub in ("images", "labels"):
                (root / sub / "train").mkdir(parents=True)
            for image in part:
                (root / "images" / "train" / image.name).symlink_to(image)
                label = sets["pool"] / "labels" / "train" / f"{image.stem}.txt"
                (root / "labels" / "train" / label.name).symlink_to(label)
    return sets


def _main_class(label: Path) -> int:
    classes = [int(line.split()[0]) for line in label.read_text().splitlines() if line.strip()]
    return max(set(classes), key=classes.count) if classes else -1


def class_counts(folder: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for label in (folder / "labels" / "train").glob("*.txt"):
        for line in label.read_text().splitlines():
            if line.strip():
                counts[int(line.split()[0])] = counts.get(int(line.split()[0]), 0) + 1
    return dict(sorted(counts.items()))


def pretrain(args: argparse.Namespace, sets: dict[str, Path], work: Path) -> Path:
    out = work / "pretrained" / "yolov5n.pth"
    if not out.is_file():
        made = fedmist("pretrain-yolo", "--data", str(sets["public"]), "--out", str(out), "--model", f"{args.model}.yaml",
                       "--imgsz", str(args.imgsz), "--epochs", str(args.pretrain_epochs), "--batch-size",
                       str(args.batch), "--lr", str(args.lr), "--cut-layer", "0")
        if made.returncode:
            raise SystemExit(made.stderr)
    return out


def central(args: argparse.Namespace, sets: dict[str, Path], pretrained: Path, seed: int) -> dict[str, Any]:
    """The pool in one process with the loop FedAvg edges run (same epochs, batch, learning rate, schedule)."""
    import torch

    from fedmist.models.yolo_env import prepare_ultralytics

    prepare_ultralytics()
    from fedmist.data.coco import DetectionDataset
    from fedmist.models.detect_images import ImageTraining, evaluate_on_images, train_on_images
    from fedmist.models.yolo import load_yolo

    torch.set_num_threads(2)
    weights = load_yolo(pretrained)
    train = DetectionDataset.open(sets["pool"], args.imgsz)
    val = DetectionDataset.open(sets["pool"], args.imgsz, prefer=("val",))
    before = evaluate_on_images(weights.model, val, weights.nc)
    started = time.monotonic()
    train_on_images(weights.model, train, ImageTraining(epochs=args.epochs, batch_size=args.batch,
                                                        learning_rate=args.lr, seed=seed))
    seconds = time.monotonic() - started
    return {**evaluate_on_images(weights.model, val, weights.nc), "train_s": round(seconds, 1),
            "pretrained_mAP50": before["mAP50"], "pretrained_mAP50-95": before["mAP50-95"]}


def job_yaml(args: argparse.Namespace, work: Path, name: str, edges: tuple[Path, Path], pretrained: Path,
             algorithm: str, extra: dict[str, str], seed: int, lr: float | None = None,
             batch: int | None = None) -> Path:
    agg = {"aggregation_algorithm": algorithm, "model": args.model, "imgsz": str(args.imgsz),
           "batch_size": str(batch or args.batch), "learning_rate": str(lr or args.lr), "min_clients": "2",
           "TEST_DATASET_URL": str(work / "pool"), "round_timeout": "3600", "seed": str(seed), **extra}
    edge_env = {"aggregation_algorithm": algorithm, "seed": str(seed),
                **({"epsilon": extra["epsilon"]} if "epsilon" in extra else {})}

    def container(env: dict[str, str]) -> dict:
        return {"image": "fedmist", "name": "w", "env": [{"name": k, "value": v} for k, v in env.items()]}

    docs = [{"apiVersion": "sedna.io/v1alpha1", "kind": "Dataset", "metadata": {"name": f"d{i}"},
             "spec": {"url": str(edge), "format": "dir", "nodeName": f"edge{i}"}} for i, edge in enumerate(edges, 1)]
    docs += [{"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "out"},
              "spec": {"url": str(work / "models" / name / "yolov5.pth"), "format": "pth"}},
             {"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "pre"},
              "spec": {"url": str(pretrained), "format": "pth"}},
             {"apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "metadata": {"name": name},
              "spec": {"pretrainedModel": {"name": "pre"},
                       "aggregationWorker": {"model": {"name": "out"},
                                             "template": {"spec": {"nodeName": "cloud", "containers": [container(agg)]}}},
                       "trainingWorkers": [{"dataset": {"name": f"d{i}"}, "template": {"spec": {
                           "nodeName": f"edge{i}", "containers": [container(edge_env)]}}} for i in (1, 2)]}}]
    path = work / "jobs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def run_job(work: Path, name: str, job: Path) -> dict[str, Any]:
    started = time.monotonic()
    result = fedmist("run", "-f", str(job), "--workdir", str(work / "runs" / name), "--no-progress")
    wall = time.monotonic() - started
    status = json.loads((work / "runs" / name / "status.json").read_text())
    if result.returncode:
        raise SystemExit(f"{name} failed: {status.get('conditions')}\n{result.stderr[-3000:]}")
    metrics = status["metrics"]
    return {"mAP50": metrics["mAP50"], "mAP50-95": metrics["mAP50-95"], "wall_s": round(wall, 1),
            "history": [{k: v for k, v in h.items() if "mAP" in k or k in ("round", "epoch", "loss")}
                        for h in metrics.get("history", [])]}


def rescore(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Evaluate the saved models again with the jobs' own evaluation (MistNet: through the clean bit channel)."""
    import torch

    from fedmist.models.yolo_env import prepare_ultralytics

    prepare_ultralytics()
    from fedmist.data.coco import DetectionDataset
    from fedmist.models.detect_cloud_train import evaluate_detection
    from fedmist.models.detect_extract import detection_feature_shape
    from fedmist.models.detect_images import evaluate_on_images
    from fedmist.models.yolo import load_yolo
    from fedmist.models.yolo_split import split_detection_model
    from fedmist.worker.detect.aggregator import _val_bits

    torch.set_num_threads(2)
    val = DetectionDataset.open(work / "pool", args.imgsz, prefer=("val",))
    labels = [val.load(i)[1] for i in range(len(val))]
    pre = load_yolo(work / "pretrained" / "yolov5n.pth")
    out = {"pretrained": evaluate_on_images(pre.model, val, pre.nc)}
    for run in sorted((work / "models").iterdir()):
        meta = json.loads((run / "yolov5.pth.json").read_text())
        weights = load_yolo(run / "yolov5.pth")
        if meta.get("algorithm") == "mistnet":
            edge, cloud = split_detection_model(weights.model, meta["cut_layer"])
            edge.eval()
            eps = float(meta["epsilon"])
            out[run.name] = evaluate_detection(cloud, _val_bits(edge, (val, labels)), labels,
                                               detection_feature_shape(edge, args.imgsz), args.imgsz, weights.nc,
                                               [eps, eps], meta.get("debias", True), weights=[1, 1])
        else:
            out[run.name] = evaluate_on_images(weights.model, val, weights.nc)
        print(run.name, out[run.name], flush=True)
    (work / "rescored.json").write_text(json.dumps(out, indent=1))
    return out


def main() -> None:
    args = parse_args()
    work = Path(args.work)
    if args.rescore:
        rescore(args, work)
        return
    work.mkdir(parents=True, exist_ok=True)
    runs = set(args.runs.split(","))
    t0 = time.monotonic()
    sets = make_sets(args, work)
    pretrained = pretrain(args, sets, work)
    print(f"data and pretraining: {time.monotonic() - t0:.0f} s; edge classes: iid "
          f"{class_counts(sets['iid1'])} / {class_counts(sets['iid2'])}, non-iid {class_counts(sets['noniid1'])} / "
          f"{class_counts(sets['noniid2'])}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    out = work / args.results
    if out.is_file():
        results = json.loads(out.read_text())

    def wanted(name: str) -> bool:  # a rerun resumes: runs already in results.json are kept
        return name not in results

    def record(name: str, value: dict[str, Any]) -> None:
        results[name] = value
        out.write_text(json.dumps(results, indent=1))
        print(name, {k: v for k, v in value.items() if k != "history"}, flush=True)

    for seed in [int(x) for x in args.seeds.split(",")]:
        run_all(args, work, sets, pretrained, runs, seed, wanted, record)
    for other in sorted(work.glob("results*.json")):
        results = {**json.loads(other.read_text()), **results}
    print_tables(results)


def run_all(args: argparse.Namespace, work: Path, sets: dict[str, Path], pretrained: Path, runs: set[str], seed: int,
            wanted: Any, record: Any) -> None:
    """Every chosen run at one seed (runs already recorded are skipped)."""
    tag = f"-s{seed}" if seed else ""
    if "central" in runs and wanted("centralized" + tag):
        record("centralized" + tag, central(args, sets, pretrained, seed))
    rounds = {"exit_round": str(args.epochs), "epochs": "1"}
    lr, batch = args.fedavg_lr or args.lr, args.fedavg_batch or args.batch
    for split in ("iid", "noniid"):
        name = (f"fedavg-{split}" + (f"-lr{lr:g}" if lr != args.lr else "") +
                (f"-b{batch}" if batch != args.batch else "") + tag)
        if f"fedavg-{split}" in runs and wanted(name):
            job = job_yaml(args, work, name, (sets[f"{split}1"], sets[f"{split}2"]), pretrained, "fedavg", rounds,
                           seed, lr, batch)
            record(name, run_job(work, name, job))
    if "mistnet" in runs:
        cuts = [int(c) for c in args.cuts.split(",")]
        epsilons = args.epsilons.split(",")
        plan = [(cuts[0], eps) for eps in epsilons] + [(cut, "inf") for cut in cuts[1:]]
        for cut, eps in plan:
            name = f"mistnet-cut{cut}-eps{eps}" + tag
            if not wanted(name):
                continue
            job = job_yaml(args, work, name, (sets["iid1"], sets["iid2"]), pretrained, "mistnet",
                           {"epsilon": eps, "cut_layer": str(cut), "epochs": str(args.epochs)}, seed)
            record(name, run_job(work, name, job))


def print_tables(results: dict[str, dict[str, Any]]) -> None:
    """Every run, then (when some ran at several seeds) each run's mean and spread over its seeds."""
    base = results.get("centralized", {}).get("mAP50")
    print("\n| run | mAP50 | mAP50-95 | vs centralized mAP50 | seconds |\n|---|---|---|---|---|")
    for name, value in results.items():
        ratio = f"{value['mAP50'] / base:.2f}" if base else "-"
        print(f"| {name} | {value['mAP50']:.3f} | {value['mAP50-95']:.3f} | {ratio} | "
              f"{value.get('wall_s', value.get('train_s'))} |")
    groups: dict[str, list[float]] = {}
    for name, value in results.items():
        groups.setdefault(re.sub(r"-s\d+$", "", name), []).append(value["mAP50"])
    if all(len(values) == 1 for values in groups.values()):
        return
    centre = statistics.mean(groups["centralized"]) if "centralized" in groups else None
    print("\n| run | seeds | mAP50 mean | min - max | vs centralized mean |\n|---|---|---|---|---|")
    for name, values in groups.items():
        ratio = f"{statistics.mean(values) / centre:.2f}" if centre else "-"
        print(f"| {name} | {len(values)} | {statistics.mean(values):.3f} | {min(values):.3f} - {max(values):.3f} "
              f"| {ratio} |")

if __name__ == "__main__":
    main()
