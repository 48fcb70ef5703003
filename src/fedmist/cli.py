"""``fedmist``: the command line. A thin layer: parse arguments, call the library, turn errors into one line.

Exit codes: 0 success, 1 the job (or command) failed, 2 bad input (manifest, arguments, data paths).
Heavy modules (torch) are imported inside the commands that need them, so ``fedmist --help`` and manifest
errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fedmist import __version__

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit code 2."""


def _path_map(items: Sequence[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            raise UsageError(f"--path-map {item!r}: expected SRC=DST, e.g. /data=./data")
        mapping[source] = target
    return mapping


def _load_job(args: argparse.Namespace):
    """The job of ``-f`` files as a :class:`fedmist.Job`, its warnings printed, its import paths checked."""
    from fedmist.api import Job

    job = Job.from_manifests(args.file, path_map=_path_map(args.path_map), job=args.job)
    for warning in job.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    job.check()
    return job


def cmd_run(args: argparse.Namespace) -> int:
    import os

    from fedmist.launch.spawn import Zygote

    # Started before the manifests are even read: its torch import (the longest part of a job's start-up)
    # runs on one core while this process loads the launcher on the other.
    _quiet_openmp()
    zygote = Zygote() if not args.no_prefork and hasattr(os, "fork") else None
    try:
        job = _load_job(args)
        result = job.run(args.workdir, timeout=args.timeout, progress=not args.no_progress, tls=not args.no_tls,
                         max_restarts=args.max_restarts, check=False,
                         prefork=zygote if zygote is not None else not args.no_prefork)
    finally:
        if zygote is not None:
            zygote.close()  # the job has closed it already, unless it never started
    return result.exit_code


def cmd_validate(args: argparse.Namespace) -> int:
    print(_load_job(args).describe())
    return 0


def _quiet_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning: several fedmist processes share few cores, and spinning
    threads of one process starve the others (measured: 8x slower cloud training on 2 shared cores).
    Must run before torch is imported; a value the user set wins."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cmd_worker(args: argparse.Namespace) -> int:
    _quiet_openmp()
    from fedmist.worker.main import run_worker

    return run_worker("aggregator" if args.role == "aggregate" else "trainer", args.args)


def cmd_data_split(args: argparse.Namespace) -> int:
    from fedmist.data.split import split_dataset

    edges = [int(x) for x in args.edges.split(",") if x.strip()]
    summary = split_dataset(args.source, args.out, public=args.public, edges=edges, seed=args.seed,
                            alpha=args.alpha)
    counts = ", ".join(f"{name} {info['count']}" for name, info in summary["splits"].items())
    print(f"wrote {args.out}: {counts}")
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from fedmist.data.image_index import export_pngs

    edges = [int(x) for x in args.edges.split(",") if x.strip()] or None
    counts = export_pngs(args.source, args.out, limit=args.limit, edges=edges, seed=args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{name} {n} (index.txt)" for name, n in counts.items()))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    _quiet_openmp()
    import time

    from fedmist.data.loaders import load_dataset
    from fedmist.imports import is_import_path, search_path
    from fedmist.models.pretrain import pretrain
    from fedmist.models.weights import save_weights

    fmt = args.format or ("python" if is_import_path(args.data) else "idx")
    url = args.data
    if fmt == "python" and "split=" not in url:
        url += ("&" if "?" in url else "?") + f"split={args.split}"
    with search_path([]):  # the current folder, so `fedmist pretrain --model mypkg.nets:cnn` finds mypkg
        images, labels = load_dataset(url, fmt)
        started = time.monotonic()

    def on_epoch(epoch: int, stats: dict) -> None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in stats.items() if isinstance(v, float))
        print(f"pretrain epoch {epoch}/{args.epochs}: {shown}", file=sys.stderr)

    with search_path([]):
        state = pretrain(images, labels, model=args.model, epochs=args.epochs, seed=args.seed,
                         cut_layer=args.cut_layer or None, channel_epsilon=args.channel_epsilon,
                         threads=args.threads, on_epoch=on_epoch)
    path = save_weights(state, args.out)
    print(f"wrote {path} ({len(images)} images, {args.epochs} epochs, {time.monotonic() - started:.1f} s)")
    return 0


def _cut_layer_arg(text: str) -> int | str:
    """``--cut-layer``: an index (``3``; ``0`` = no channel) or a layer/stage name (``pool1``)."""
    return int(text) if text.strip().isdigit() else text.strip()


def cmd_report(args: argparse.Namespace) -> int:
    from fedmist.launch.report import write_report

    print(f"wrote {write_report(Path(args.workdir), Path(args.out) if args.out else None)}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Print the Kubernetes objects the operator would create for the job (multi-document YAML)."""
    import os
    import secrets

    import yaml

    from fedmist.launch.kube.render import RenderOptions, credential_secrets, plain_ws_warnings, render_job
    from fedmist.launch.kube.source import from_files

    loaded = from_files([Path(f) for f in args.file], _path_map(args.path_map), args.job, os.environ)
    for warning in [*loaded.bundle.warnings, *plain_ws_warnings(loaded.job)]:
        print(f"warning: {warning}", file=sys.stderr)
    options = RenderOptions(uid=args.uid, token=None if args.no_token_secret else secrets.token_urlsafe(32),
                            image=args.image, owner_refs=not args.no_owner_refs, spec_hash=loaded.spec_hash)
    objects = render_job(loaded.job, loaded.raw_spec, credential_secrets(loaded.bundle, loaded.job), options)
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False))
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    """Run the Kubernetes operator (kopf) for FederatedLearningJobs."""
    import importlib.util
    import logging

    if importlib.util.find_spec("kopf") is None:
        raise UsageError("fedmist operator needs kopf: pip install 'fedmist[kube]'")
    from fedmist.launch.kube.operator import run_operator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_operator(args.namespace, args.interval, args.image)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedmist",
        description="Federated learning between edge devices and a cloud (MistNet and the FedAvg family), "
                    "from Sedna-style manifests.")
    parser.add_argument("--version", action="version", version=f"fedmist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def job_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--file", action="append", required=True, metavar="FILE",
                       help="manifest file (multi-document YAML); repeat for several files")
        p.add_argument("--path-map", action="append", default=[], metavar="SRC=DST",
                       help="re-root host paths in the manifests, e.g. /data=./data (repeatable)")
        p.add_argument("--job", help="which FederatedLearningJob to use when the files define several")

    run = sub.add_parser("run", help="run a job on this machine (aggregator + one process per training worker)")
    job_args(run)
    run.add_argument("--workdir", help="where status.json, logs and state go (default runs/<job name>)")
    run.add_argument("--timeout", type=float, default=24 * 3600.0, help="fail the job after this many seconds")
    run.add_argument("--no-progress", action="store_true", help="no live progress, only the final summary")
    run.add_argument("--max-restarts", type=int, default=3,
                     help="restarts per failed worker (restartPolicy OnFailure, exponential backoff from 1 s)")
    run.add_argument("--no-tls", action="store_true",
                     help="plain ws instead of wss with a per-job CA (frames are still authenticated by MAC)")
    run.add_argument("--no-prefork", action="store_true",
                     help="start each worker as a fresh `python -m fedmist worker ...` (as a container does) "
                          "instead of forking it from a process that imported torch once (faster start)")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="plot a job's metric history (status.json) to a PNG")
    report.add_argument("workdir", help="the job's work folder (holds status.json)")
    report.add_argument("--out", help="PNG path (default <workdir>/report.png)")
    report.set_defaults(func=cmd_report)

    validate = sub.add_parser("validate", help="check manifests and print what would run")
    job_args(validate)
    validate.set_defaults(func=cmd_validate)

    worker = sub.add_parser("worker", help="run one worker from the env contract (what a container runs)")
    worker.add_argument("role", choices=["aggregate", "train"])
    worker.add_argument("args", nargs=argparse.REMAINDER, help="container args (recorded, not interpreted)")
    worker.set_defaults(func=cmd_worker)

    data = sub.add_parser("data", help="prepare datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    split = data_sub.add_parser("split", help="split an MNIST-format dataset into public, edge and test sets")
    split.add_argument("--source", default="/usr/share/datasets/fashion-mnist",
                       help="folder with train-*/t10k-* IDX files (default: Debian's Fashion-MNIST)")
    split.add_argument("--out", required=True, help="output folder (public/, edge1/, ..., test/)")
    split.add_argument("--public", type=int, default=10000, help="images in the public (pretraining) split")
    split.add_argument("--edges", default="25000,25000", help="images per edge, comma-separated")
    split.add_argument("--alpha", type=float, default=None, help="Dirichlet alpha for non-IID edges (default IID)")
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(func=cmd_data_split)
    export = data_sub.add_parser("export", help="write an MNIST-format dataset as PNG files with Sedna txt indexes")
    export.add_argument("--source", default="/usr/share/datasets/fashion-mnist",
                        help="folder with train-*/t10k-* IDX files (default: Debian's Fashion-MNIST)")
    export.add_argument("--out", required=True, help="output folder (train/ or edge1/.., and test/)")
    export.add_argument("--limit", type=int, default=None, help="at most this many images per split")
    export.add_argument("--edges", default="", help="images per edge, comma-separated (IID split of train)")
    export.add_argument("--seed", type=int, default=0)
    export.set_defaults(func=cmd_data_export)
    from fedmist.cli_yolo import add_commands as add_detection_commands

    add_detection_commands(sub, data_sub)

    pre = sub.add_parser("pretrain", help="train the full model on the public split; write the pretrained file")
    pre.add_argument("--data", required=True,
                     help="IDX dataset folder (e.g. the public split), or a loader 'package.module:loader[?name=value]'")
    pre.add_argument("--format", choices=["idx", "txt", "csv", "python"],
                     help="dataset format (default: python for an import path, else idx)")
    pre.add_argument("--split", default="public", help="split passed to a python loader (default: public)")
    pre.add_argument("--out", required=True, help="output .pth (or .safetensors) file")
    pre.add_argument("--model", default="lenet5", help="built-in name or import path 'package.module:factory'")
    pre.add_argument("--epochs", type=int, default=15)
    pre.add_argument("--cut-layer", type=_cut_layer_arg, default=3,
                     help="train the edge features to be informative as noisy bits at this cut, an index or a "
                          "layer name (0: plain)")
    pre.add_argument("--channel-epsilon", type=float, default=1.0,
                     help="randomized-response epsilon of the channel simulated at the cut while pretraining "
                          "(public data only; 1.0 serves every job epsilon >= 1 well, 'inf' = binarize only)")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--threads", type=int, default=2)
    pre.set_defaults(func=cmd_pretrain)
    from fedmist.audit.command import add_audit_parser

    add_audit_parser(sub, job_args)
    from fedmist.launch.kube.names import DEFAULT_IMAGE, UID_PLACEHOLDER

    render = sub.add_parser("render", help="print the Kubernetes objects (Pods, Service, Secret) of a job as YAML")
    job_args(render)
    render.add_argument("--image", help="use this image for every worker (e.g. when the manifest names a "
                                        "Sedna example image, which does not contain fedmist)")
    render.add_argument("--uid", default=UID_PLACEHOLDER,
                        help="the FederatedLearningJob's uid for ownerReferences (kubectl get fl NAME -o "
                             "jsonpath='{.metadata.uid}'); the default is a placeholder")
    render.add_argument("--no-owner-refs", action="store_true",
                        help="omit ownerReferences (objects then outlive the job; needed when it is not applied)")
    render.add_argument("--no-token-secret", action="store_true",
                        help="do not print the job token Secret (create <job>-fedmist-token yourself)")
    render.set_defaults(func=cmd_render)

    operator = sub.add_parser("operator", help="run the Kubernetes operator (needs: pip install 'fedmist[kube]')")
    operator.add_argument("--namespace", help="watch only this namespace (default: all)")
    operator.add_argument("--interval", type=float, default=10.0, help="seconds between progress polls of a job")
    operator.add_argument("--image", default=DEFAULT_IMAGE, help="image for workers without one, and the status sidecar")
    operator.set_defaults(func=cmd_operator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from fedmist.spec.errors import ManifestError

    try:
        return args.func(args)
    except (ManifestError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # a path that cannot be read or written: one line, not a traceback
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
