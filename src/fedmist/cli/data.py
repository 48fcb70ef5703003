"""Commands that prepare datasets: ``data split``, ``data export`` and ``data synth-detection``."""

from __future__ import annotations

import argparse

from fedmist.cli.common import FASHION_MNIST, Subparsers, add_command

SOURCE_HELP = "folder with train-*/t10k-* IDX files (default: %(default)s, Debian's Fashion-MNIST)"


def _edge_sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def cmd_data_split(args: argparse.Namespace) -> int:
    from fedmist.data.split import split_dataset

    summary = split_dataset(args.source, args.out, public=args.public, edges=_edge_sizes(args.edges), seed=args.seed,
                            alpha=args.alpha)
    counts = ", ".join(f"{name} {info['count']}" for name, info in summary["splits"].items())
    print(f"wrote {args.out}: {counts}")
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from fedmist.data.image_index import export_pngs

    counts = export_pngs(args.source, args.out, limit=args.limit, edges=_edge_sizes(args.edges) or None,
                         seed=args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{name} {n} (index.txt)" for name, n in counts.items()))
    return 0


def cmd_synth_detection(args: argparse.Namespace) -> int:
    from fedmist.data.synth_detection import synthesize_detection

    lo, _, hi = args.objects.partition("-")
    try:
        objects = (int(lo), int(hi or lo))
    except ValueError:
        raise ValueError(f"--objects {args.objects!r}: expected MIN-MAX, e.g. 2-5") from None
    try:
        classes = tuple(int(c) for c in args.classes.split(",")) if args.classes else None
    except ValueError:
        raise ValueError(f"--classes {args.classes!r}: expected class ids, e.g. 1,8,7") from None
    counts = synthesize_detection(args.source, args.out, train=args.train, val=args.val, size=args.size,
                                  objects=objects, seed=args.seed, classes=classes)
    print(f"wrote {args.out}: " + ", ".join(f"{split} {n} images" for split, n in
                                             (("train", args.train), ("val", args.val)) if n)
          + f" ({sum(counts.values())} boxes), data.yaml")
    return 0


def add_commands(sub: Subparsers) -> None:
    """Register ``data`` and its actions."""
    data = sub.add_parser("data", help="prepare datasets (split, export, synth-detection)",
                          description="Prepare datasets.")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    split = add_command(actions, "split", cmd_data_split,
                        "split an MNIST-format dataset into public, edge and test sets")
    split.add_argument("--source", default=FASHION_MNIST, help=SOURCE_HELP)
    split.add_argument("--out", required=True, help="output folder (public/, edge1/, ..., test/)")
    split.add_argument("--public", type=int, default=10000, help="images in the public (pretraining) split")
    split.add_argument("--edges", default="25000,25000", help="images per edge, comma-separated")
    split.add_argument("--alpha", type=float, default=None, help="Dirichlet alpha for non-IID edges (default IID)")
    split.add_argument("--seed", type=int, default=0, help="seed of the shuffle and the Dirichlet draw")

    export = add_command(actions, "export", cmd_data_export,
                         "write an MNIST-format dataset as PNG files with Sedna txt indexes")
    export.add_argument("--source", default=FASHION_MNIST, help=SOURCE_HELP)
    export.add_argument("--out", required=True, help="output folder (train/ or edge1/.., and test/)")
    export.add_argument("--limit", type=int, default=None, help="at most this many images per split (default all)")
    export.add_argument("--edges", default="",
                        help="images per edge, comma-separated (IID split of train; default: one train/ folder)")
    export.add_argument("--seed", type=int, default=0, help="seed of the edge split")

    synth = add_command(actions, "synth-detection", cmd_synth_detection,
                        "write a COCO128-layout detection set of Fashion-MNIST objects on backgrounds")
    synth.add_argument("--source", default=FASHION_MNIST, help=SOURCE_HELP)
    synth.add_argument("--out", required=True, help="output folder (images/, labels/, data.yaml)")
    synth.add_argument("--train", type=int, default=128, help="images in the train split")
    synth.add_argument("--val", type=int, default=32, help="images in the val split (0: none)")
    synth.add_argument("--size", type=int, default=320, help="image side in pixels")
    synth.add_argument("--objects", default="2-5", help="objects per image, MIN-MAX")
    synth.add_argument("--classes", default="", help="only these Fashion-MNIST class ids, renumbered 0.. in this "
                       "order (e.g. 1,8,7: trouser, bag, sneaker; fewer, distinct classes learn faster)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (objects, positions, backgrounds)")
