"""Commands that make or use models: ``pretrain`` (classification), ``pretrain-yolo`` and ``predict`` (YOLO).

Each is a thin layer over the library (:func:`fedmist.api.pretrain`, :mod:`fedmist.models.yolo_pretrain`,
:mod:`fedmist.models.yolo_predict`); torch and ultralytics are imported only inside the commands.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fedmist.cli.common import Subparsers, add_command, print_epoch, quiet_openmp
from fedmist.spec.params import DEFAULT_CUT_LAYER


def cmd_pretrain(args: argparse.Namespace) -> int:
    quiet_openmp()
    from fedmist.api import pretrain
    from fedmist.imports import search_path

    started = time.monotonic()
    with search_path([]):  # the current folder, so `fedmist pretrain --model mypkg.nets:cnn` finds mypkg
        path = pretrain(args.model, args.data, args.out, format=args.format, split=args.split, epochs=args.epochs,
                        cut_layer=args.cut_layer or None, channel_epsilon=args.channel_epsilon, seed=args.seed,
                        threads=args.threads, on_epoch=print_epoch(args.epochs))
    print(f"wrote {path} ({args.epochs} epochs, {time.monotonic() - started:.1f} s)")
    return 0


def cmd_pretrain_yolo(args: argparse.Namespace) -> int:
    quiet_openmp()
    from fedmist.models.yolo_pretrain import pretrain_yolo

    summary = pretrain_yolo(args.data, args.out, model=args.model, epochs=args.epochs, imgsz=args.imgsz,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                            cut_layer=args.cut_layer or None, on_epoch=print_epoch(args.epochs))
    print(f"wrote {args.out} ({summary['images']} images, {args.epochs} epochs, {summary['seconds']:.1f} s)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    quiet_openmp()
    from fedmist.models.yolo_predict import predict_images

    written = predict_images(args.model, [Path(p) for p in args.images], Path(args.out), conf=args.conf,
                             imgsz=args.imgsz)
    for path, count in written:
        print(f"wrote {path} ({count} boxes)")
    return 0


def _cut_layer_arg(text: str) -> int | str:
    """``--cut-layer``: an index (``3``; ``0`` = no channel) or a layer/stage name (``pool1``)."""
    return int(text) if text.strip().isdigit() else text.strip()


def add_commands(sub: Subparsers) -> None:
    """Register ``pretrain``, ``pretrain-yolo`` and ``predict``."""
    pre = add_command(sub, "pretrain", cmd_pretrain,
                      "train the full model on the public split; write the pretrained file")
    pre.add_argument("--data", required=True,
                     help="IDX dataset folder (e.g. the public split), or a loader 'package.module:loader[?name=value]'")
    pre.add_argument("--format", choices=["idx", "txt", "csv", "python"],
                     help="dataset format (default: python for an import path, txt/csv by suffix, else idx)")
    pre.add_argument("--split", default="public", help="split passed to a python loader (default: public)")
    pre.add_argument("--out", required=True, help="output .pth (or .safetensors) file")
    pre.add_argument("--model", default="lenet5", help="built-in name or import path 'package.module:factory'")
    pre.add_argument("--epochs", type=int, default=15, help="passes over the public data")
    pre.add_argument("--cut-layer", type=_cut_layer_arg, default=DEFAULT_CUT_LAYER["classify"],
                     help="train the edge features to be informative as noisy bits at this cut, an index or a "
                          "layer name (0: plain)")
    pre.add_argument("--channel-epsilon", type=float, default=1.0,
                     help="randomized-response epsilon of the channel simulated at the cut while pretraining "
                          "(public data only; 1.0 serves every job epsilon >= 1 well, 'inf' = binarize only)")
    pre.add_argument("--seed", type=int, default=0, help="seed of the initial weights, order and channel noise")
    pre.add_argument("--threads", type=int, default=2, help="torch threads")

    yolo = add_command(sub, "pretrain-yolo", cmd_pretrain_yolo,
                       "train a YOLO detector on a public COCO-layout set; write the pretrained .pth")
    yolo.add_argument("--data", required=True, help="COCO-layout dataset folder (its train split is used)")
    yolo.add_argument("--out", required=True, help="output .pth (a plain state_dict + a metadata JSON beside it)")
    yolo.add_argument("--model", default="yolov5n.yaml", help="ultralytics model yaml (yolov5n.yaml, yolov5s.yaml)")
    yolo.add_argument("--epochs", type=int, default=10, help="passes over the train split")
    yolo.add_argument("--imgsz", type=int, default=320, help="training image size in pixels")
    yolo.add_argument("--batch-size", type=int, default=16, help="images per step")
    yolo.add_argument("--lr", type=float, default=0.002, help="learning rate")
    yolo.add_argument("--cut-layer", type=int, default=DEFAULT_CUT_LAYER["detect"],
                      help="binarize the features at this cut while pretraining (channel-aware; 0: plain)")
    yolo.add_argument("--seed", type=int, default=0, help="random seed")
    yolo.add_argument("--threads", type=int, default=2, help="torch threads")

    predict = add_command(sub, "predict", cmd_predict,
                          "detect objects with a trained YOLO model; write PNGs with boxes")
    predict.add_argument("model", help="the job's MODEL_URL file (state_dict + JSON) or an ultralytics checkpoint")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--out", default="predictions", help="output folder for the PNGs")
    predict.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    predict.add_argument("--imgsz", type=int, default=None, help="inference size (default: the model's)")
