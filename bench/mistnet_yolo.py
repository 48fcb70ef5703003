"""MistNet YOLO detection benchmark, in one process (no network): edge cost, bytes, cloud cost, mAP.

Synthetic COCO-layout data from Fashion-MNIST: a public set (pretraining), 2 edges x 128 images and a
validation set, at 320 px. yolov5n pretrained channel-aware at cut 4 on the public set; per epsilon the edges
extract (binarize + randomized response) once, the cloud trains the post-cut layers for N epochs on the bits
and is evaluated through the clean channel (mAP50 / mAP50-95). Prints one row per epsilon.

    .venv/bin/python bench/mistnet_yolo.py                      # the table in BENCHMARKS.md
    .venv/bin/python bench/mistnet_yolo.py --pretrained /tmp/yolov5n.pth --epochs 5   # reuse a pretrained file
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--work", default="/tmp/fedmist-bench-yolo", help="where the synthetic sets and weights go")
    ap.add_argument("--model", default="yolov5n.yaml")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--per-edge", type=int, default=128)
    ap.add_argument("--edges", type=int, default=2)
    ap.add_argument("--val", type=int, default=64)
    ap.add_argument("--public", type=int, default=256, help="public images for pretraining")
    ap.add_argument("--pretrain-epochs", type=int, default=15)
    ap.add_argument("--pretrained", default="", help="use this pretrained file instead of pretraining")
    ap.add_argument("--cut", type=int, default=4)
    ap.add_argument("--eps", default="inf,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--threads", type=int, default=2)
    return ap.parse_args()


class MemoryRecords:
    """Records in memory, in the feature-store layout (features + box block, count as label)."""

    def __init__(self, rows: np.ndarray, feature_shape: tuple[int, ...]) -> None:
        self.rows, self.feature_shape = rows, feature_shape

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self.rows[indices]
        return rows[:, :-1], rows[:, -1].astype(np.int64)


def main() -> None:
    args = parse_args()
    from fedmist.models.yolo_env import prepare_ultralytics

    prepare_ultralytics()
    import torch

    from fedmist.data.coco import VAL_SPLITS, DetectionDataset
    from fedmist.data.synth_detection import synthesize_detection
    from fedmist.models.detect_cloud_train import DetectionFeatures, evaluate_detection, train_detection_cloud
    from fedmist.models.detect_extract import DetectionRecordStream, detection_feature_shape, edge_bits
    from fedmist.models.yolo import load_yolo
    from fedmist.models.yolo_pretrain import pretrain_yolo
    from fedmist.models.yolo_split import split_detection_model
    from fedmist.privacy.channel import pack_bits

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    sets = {"public": (args.public, 0, 100), "val": (1, args.val, 200),
            **{f"edge{i + 1}": (args.per_edge, 0, i + 1) for i in range(args.edges)}}
    for name, (train, val, seed) in sets.items():
        if not (work / name / "data.yaml").exists():
            synthesize_detection(args.fmnist, work / name, train=train, val=val, size=args.imgsz, seed=seed)
    pretrained = Path(args.pretrained) if args.pretrained else work / "pretrained" / "yolov5n.pth"
    pretrain_s = float("nan")
    if not pretrained.exists():
        t0 = time.monotonic()
        pretrain_yolo(work / "public", pretrained, model=args.model, epochs=args.pretrain_epochs, imgsz=args.imgsz,
                      batch_size=args.batch, lr=0.002, threads=args.threads, cut_layer=args.cut,
                      on_epoch=lambda e, s: print(f"  pretrain epoch {e}: loss {s['loss']:.3f} ({s['seconds']:.1f} s)",
                                                  flush=True))
        pretrain_s = time.monotonic() - t0
    val = DetectionDataset.open(work / "val", args.imgsz, prefer=VAL_SPLITS)
    val_labels = [val.load(i)[1] for i in range(len(val))]
    print(f"pretrain {pretrain_s:.0f} s; model {args.model}, cut {args.cut}, {args.imgsz} px, "
          f"{args.edges} x {args.per_edge} edge images, {len(val)} val images, {args.epochs} cloud epochs "
          f"(batch {args.batch}, lr {args.lr}), {args.threads} threads")
    print("| epsilon | edge s/image | bytes/image (bits + boxes) | vs float32 | cloud s/epoch | mAP50 | mAP50-95 | "
          "mAP50 before cloud training |")
    print("|---|---|---|---|---|---|---|---|")
    for text in args.eps.split(","):
        eps = math.inf if text.strip() == "inf" else float(text)
        weights = load_yolo(pretrained)
        edge, cloud = split_detection_model(weights.model, args.cut)
        edge.eval()
        shape = detection_feature_shape(edge, args.imgsz)
        rows, edge_s, n_edge = [], 0.0, 0
        for i in range(args.edges):
            data = DetectionDataset.open(work / f"edge{i + 1}", args.imgsz, nc=weights.nc)
            stream = DetectionRecordStream(edge, data, eps, seed=i, batch_size=16)
            record = b"".join(chunk for _, chunk in stream)
            rows.append(np.frombuffer(record, dtype=np.uint8))
            edge_s += stream.compute_s
            n_edge += len(data)
        table = np.concatenate(rows).reshape(n_edge, -1)
        features = DetectionFeatures(MemoryRecords(table, shape))
        val_bits = np.concatenate([pack_bits(edge_bits(edge, val.batch(s, s + 16)[0]).numpy())
                                   for s in range(0, len(val), 16)])
        before = evaluate_detection(cloud, val_bits, val_labels, shape, args.imgsz, weights.nc, eps, True)
        history = train_detection_cloud(
            cloud, weights.model, features, epochs=args.epochs, batch_size=args.batch, lr=args.lr, epsilon=eps,
            on_epoch=lambda e, s: print(f"  eps {text}: epoch {e} loss {s['loss']:.3f} ({s['seconds']:.1f} s)",
                                        flush=True))
        result = evaluate_detection(cloud, val_bits, val_labels, shape, args.imgsz, weights.nc, eps, True)
        per_epoch = sum(h["seconds"] for h in history) / len(history)
        record_bytes = table.shape[1]
        float_bytes = 4 * math.prod(shape)
        print(f"| {text} | {edge_s / n_edge:.4f} | {record_bytes} ({(math.prod(shape) + 7) // 8} + "
              f"{record_bytes - (math.prod(shape) + 7) // 8}) | {float_bytes / record_bytes:.1f}x less | "
              f"{per_epoch:.1f} | {result['mAP50']:.3f} | {result['mAP50-95']:.3f} | {before['mAP50']:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
