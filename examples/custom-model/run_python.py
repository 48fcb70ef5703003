"""The same two jobs as mistnet.yaml and fedavg.yaml, built and run from Python with fedmist's API.

    python make_pngs.py            # once: the PNG data under ./data
    python run_python.py           # MistNet, then FedAvg; prints each job's accuracy and model path
    python run_python.py --only fedavg --data /tmp/pngs --out /tmp/runs

Your functions and classes are passed as themselves; fedmist turns them into import paths that its worker
processes import again (so they must live in a module, like fmnist_cnn/ here, not in this script).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from fmnist_cnn.data import load_pngs
from fmnist_cnn.model import small_cnn
from fmnist_cnn.strategy import FedAvgM
from fmnist_cnn.training import FlipSmoothTrainer

import fedmist

HERE = Path(__file__).resolve().parent


def mistnet(data: Path, out: Path) -> fedmist.RunResult:
    """Pretrain the CNN on the public split through the bit channel, then run MistNet over two edges."""
    pngs = functools.partial(load_pngs, root=str(data))
    pretrained = fedmist.pretrain(small_cnn, pngs, out / "pretrained" / "cnn.pth", split="public", epochs=3,
                                  cut_layer="pool1", threads=1)
    job = fedmist.Job(
        "custom-cnn-mistnet-py", algorithm="mistnet", model=small_cnn, cut_layer="pool1", epsilon=2.0,
        edges=[fedmist.Edge(pngs, name="edge1", split="edge1"), fedmist.Edge(pngs, name="edge2", split="edge2")],
        test_data=pngs, pretrained=pretrained, epochs=4, batch_size=64,
        model_url=out / "model" / "cnn-mistnet.pth")
    return job.run(out / "run-mistnet", timeout=600)


def fedavg(data: Path, out: Path) -> fedmist.RunResult:
    """Three rounds of our own trainer on two edges, aggregated by our own strategy (FedAvg + server momentum)."""
    pngs = functools.partial(load_pngs, root=str(data))
    job = fedmist.Job(
        "custom-cnn-fedavg-py", algorithm=FedAvgM, model=small_cnn, trainer=FlipSmoothTrainer,
        edges=[fedmist.Edge(pngs, name="edge1", split="edge1"), fedmist.Edge(pngs, name="edge2", split="edge2")],
        test_data=pngs, rounds=3, epochs=2, batch_size=32, learning_rate=0.05,
        params={"server_momentum": 0.3, "min_clients": 2, "round_timeout": 120},
        edge_params={"label_smoothing": 0.1}, model_url=out / "model" / "cnn-fedavg.pth")
    return job.run(out / "run-fedavg", timeout=600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE / "data", help="the PNG folders (make_pngs.py --out)")
    parser.add_argument("--out", type=Path, default=HERE / "runs-python", help="models and work folders")
    parser.add_argument("--only", choices=["mistnet", "fedavg"], help="run just one of the two jobs")
    args = parser.parse_args(argv)
    jobs = {"mistnet": mistnet, "fedavg": fedavg}
    code = 0
    for name, run in jobs.items():
        if args.only in (None, name):
            result = run(args.data.resolve(), args.out.resolve())
            print(f"{name}: {result.phase}, accuracy {result.accuracy}, model {result.model_path}")
            code = code or result.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
