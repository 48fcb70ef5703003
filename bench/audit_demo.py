"""Time ``fedmist audit`` on the demo job and print its frontier table (issue 8).

Needs the demo data (`make demo`, or just its first two steps):

    .venv/bin/python -m fedmist data split --out demo/data --public 10000 --edges 25000,25000 --seed 0
    .venv/bin/python -m fedmist pretrain --data demo/data/public --out demo/pretrained/lenet5.pth
    .venv/bin/python bench/audit_demo.py                     # default epsilons inf,8,4,2,1,0.5
    .venv/bin/python bench/audit_demo.py --extra --narrow 2 --label-epsilon 2   # the options' curves

Extra arguments after ``--extra`` go to ``fedmist audit`` unchanged.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="demo", help="folder with data/ and pretrained/ (make demo)")
    parser.add_argument("--out", default="bench-out/audit", help="where the frontier files go")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more fedmist audit arguments")
    args = parser.parse_args()
    demo = Path(args.demo).resolve()
    if not (demo / "pretrained" / "lenet5.pth").exists():
        print(f"error: {demo}/pretrained/lenet5.pth missing; run the data split + pretrain steps first", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "fedmist", "audit", "-f", str(REPO / "examples/mnist-mistnet/job.yaml"),
           "--path-map", f"/data={demo / 'data'}", "--path-map", f"/pretrained={demo / 'pretrained'}",
           "--path-map", f"/model={demo / 'model'}", "--out", args.out, *args.extra]
    started = time.perf_counter()
    code = subprocess.call(cmd, cwd=REPO)
    print(f"fedmist audit wall time: {time.perf_counter() - started:.1f} s (exit {code}); frontier in {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
