"""Helpers shared by the end-to-end tests: run the real CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FMNIST = Path("/usr/share/datasets/fashion-mnist")
REPO = Path(__file__).resolve().parents[2]


def fedmist(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would (``python -m fedmist`` of this checkout's venv)."""
    return subprocess.run([sys.executable, "-m", "fedmist", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})})


def split_fmnist(root: Path, edges: str, seed: int, public: int = 0) -> Path:
    """``fedmist data split`` of the real Fashion-MNIST into ``root``: ``edges`` as "n1,n2,...", the 10k test
    set beside them; fails the test (not skips it) when the Debian dataset is missing."""
    import pytest

    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    split = fedmist("data", "split", "--source", str(FMNIST), "--out", str(root), "--public", str(public),
                    "--edges", edges, "--seed", str(seed))
    assert split.returncode == 0, split.stderr
    return root


def run_job(job: Path, data: dict[str, Path], tmp_path: Path, timeout: float) -> tuple:
    """``fedmist run`` of ``job`` with /data and /pretrained mapped to ``data``'s folders and /model to
    ``tmp_path/model``; the completed process and the job's status.json (empty when none was written)."""
    import json

    result = fedmist("run", "-f", str(job), "--path-map", f"/data={data['data']}",
                     "--path-map", f"/pretrained={data['pretrained']}", "--path-map", f"/model={tmp_path / 'model'}",
                     "--workdir", str(tmp_path / "run"), "--no-progress", timeout=timeout)
    status_file = tmp_path / "run" / "status.json"
    return result, json.loads(status_file.read_text()) if status_file.exists() else {}
