"""Detection commands of the CLI: ``data synth-detection``, ``pretrain-yolo`` and ``predict``.

Kept apart from ``cli.py`` so the detection workflow (ultralytics, imported only inside the commands) stays
one small module; ``cli.build_parser`` calls :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_synth_detection(args: argparse.Namespace) -> int:
    from fedmist.data.synth_detection import synthesize_detection

    lo, _, hi = args.objects.partition("-")
    try:
        objects = (int(lo), int(hi or lo))
    except ValueError:
        raise ValueError(f"--objects {args.objects!r}: expected MIN-MAX, e.g. 2-5") from None
    counts = synthesize_detection(args.source, args.out, train=args.train, val=args.val, size=args.size,
                                  objects=objects, seed=args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{split} {n} images" for split, n in
                                             (("train", args.train), ("val", args.val)) if n)
          + f" ({sum(counts.values())} boxes), data.yaml")
    return 0


def cmd_pretrain_yolo(args: argparse.Namespace) -> int:
    from fedmist.cli import _quiet_openmp

    _quiet_openmp()
    from fedmist.models.yolo_pretrain import pretrain_yolo

    def on_epoch(epoch: int, stats: dict) -> None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in stats.items() if isinstance(v, float))
        print(f"pretrain epoch {epoch}/{args.epochs}: {shown}", file=sys.stderr)

    summary = pretrain_yolo(args.data, args.out, model=args.model, epochs=args.epochs, imgsz=args.imgsz,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                            cut_layer=args.cut_layer, on_epoch=on_epoch)
    print(f"wrote {args.out} ({summary['images']} images, {args.epochs} epochs, {summary['seconds']:.1f} s)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fedmist.cli import _quiet_openmp

    _quiet_openmp()
    from fedmist.models.yolo_predict import predict_images

    written = predict_images(args.model, [Path(p) for p in args.images], Path(args.out), conf=args.conf,
                             imgsz=args.imgsz)
    for path, count in written:
        print(f"wrote {path} ({count} boxes)")
    return 0


def add_commands(sub: argparse._SubParsersAction, data_sub: argparse._SubParsersAction) -> None:
    """Register the detection commands on the top-level and ``data`` sub-parsers."""
    synth = data_sub.add_parser("synth-detection",
                                help="write a COCO128-layout detection set of Fashion-MNIST objects on backgrounds")
    synth.add_argument("--source", default="/usr/share/datasets/fashion-mnist",
                       help="folder with train-*/t10k-* IDX files (default: Debian's Fashion-MNIST)")
    synth.add_argument("--out", required=True, help="output folder (images/, labels/, data.yaml)")
    synth.add_argument("--train", type=int, default=128, help="images in the train split")
    synth.add_argument("--val", type=int, default=32, help="images in the val split (0: none)")
    synth.add_argument("--size", type=int, default=320, help="image side in pixels")
    synth.add_argument("--objects", default="2-5", help="objects per image, MIN-MAX")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=cmd_synth_detection)

    pre = sub.add_parser("pretrain-yolo",
                         help="train a YOLO detector on a public COCO-layout set; write the pretrained .pth")
    pre.add_argument("--data", required=True, help="COCO-layout dataset folder (its train split is used)")
    pre.add_argument("--out", required=True, help="output .pth (a plain state_dict + a metadata JSON beside it)")
    pre.add_argument("--model", default="yolov5n.yaml", help="ultralytics model yaml (yolov5n.yaml, yolov5s.yaml)")
    pre.add_argument("--epochs", type=int, default=10)
    pre.add_argument("--imgsz", type=int, default=320)
    pre.add_argument("--batch-size", type=int, default=16)
    pre.add_argument("--lr", type=float, default=0.002)
    pre.add_argument("--cut-layer", type=int, default=4,
                     help="binarize the features at this cut while pretraining (channel-aware; 0: plain)")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--threads", type=int, default=2)
    pre.set_defaults(func=cmd_pretrain_yolo)

    predict = sub.add_parser("predict", help="detect objects with a trained YOLO model; write PNGs with boxes")
    predict.add_argument("model", help="the job's MODEL_URL file (state_dict + JSON) or an ultralytics checkpoint")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--out", default="predictions", help="output folder for the PNGs")
    predict.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    predict.add_argument("--imgsz", type=int, default=None, help="inference size (default: the model's)")
    predict.set_defaults(func=cmd_predict)
