"""The custom-model example end to end, as a newcomer runs it: PNGs from its script, its own CNN, loader,
trainer and strategy, as MistNet and as FedAvg, from YAML (the real CLI) and from Python (its run_python.py)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_helpers import FMNIST, REPO

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "custom-model"


def _run(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=folder)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """A copy of the example folder with small data (800 public, 2 x 500 edge, 400 test PNGs) and the CNN
    pretrained on the public split through the bit channel -- the README's first two steps."""
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    folder = tmp_path_factory.mktemp("custom-model")
    shutil.copytree(EXAMPLE, folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("data", "pretrained", "model", "runs-python", "__pycache__"))
    made = _run(folder, "make_pngs.py", "--public", "800", "--edge", "500", "--test", "400")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().endswith("public 800, edge1 500, edge2 500, test 400")
    assert len(list((folder / "data" / "edge1").glob("*/*.png"))) == 500
    pre = _run(folder, "-m", "fedmist", "pretrain", "--format", "python", "--data",
               "fmnist_cnn.data:load_pngs?root=./data", "--split", "public", "--model", "fmnist_cnn.model:small_cnn",
               "--cut-layer", "pool1", "--epochs", "3", "--out", "pretrained/cnn.pth")
    assert pre.returncode == 0, pre.stderr
    return folder


def _succeeded(status_file: Path) -> dict:
    status = json.loads(status_file.read_text())
    assert status["phase"] == "Succeeded", status["conditions"]
    accuracy = status["metrics"]["accuracy"]
    # 1,000 edge images of 10 classes: about 0.6-0.75. Garbage features or an unsplit/unaveraged model sit
    # near chance (0.1).
    assert math.isfinite(accuracy) and accuracy > 0.4, status["metrics"]
    return status


def test_yaml_mistnet_with_user_model_and_loader(example: Path) -> None:
    result = _run(example, "-m", "fedmist", "run", "-f", "mistnet.yaml", "--workdir", "run-mistnet", "--no-progress",
                  "--timeout", "240")
    assert result.returncode == 0, result.stderr[-3000:]
    status = _succeeded(example / "run-mistnet" / "status.json")
    assert status["metrics"]["privacy"]["features_per_sample"] == 8 * 16 * 16  # cut after pool1 of a 3x32x32 CNN
    assert {w["samples"] for w in status["workers"].values()} == {500}
    import torch

    sys.path.insert(0, str(example))
    try:
        from fmnist_cnn.model import small_cnn
    finally:
        sys.path.remove(str(example))
    state = torch.load(example / "model" / "cnn-mistnet.pth", weights_only=True)
    small_cnn().load_state_dict(state)  # the saved model is the user's own class, edge and cloud together


def test_yaml_fedavg_with_user_trainer_and_strategy(example: Path) -> None:
    result = _run(example, "-m", "fedmist", "run", "-f", "fedavg.yaml", "--workdir", "run-fedavg", "--no-progress",
                  "--timeout", "240")
    assert result.returncode == 0, result.stderr[-3000:]
    status = _succeeded(example / "run-fedavg" / "status.json")
    history = status["metrics"]["history"]
    assert [h["round"] for h in history] == [1, 2, 3]
    assert all(0.0 <= h["test_worst_class_accuracy"] <= h["accuracy"] for h in history)  # the user's evaluate_global
    meta = json.loads((example / "model" / "cnn-fedavg.pth.json").read_text())
    assert meta["strategy"].startswith("FedAvgM(") and "server_momentum=0.3" in meta["strategy"]
    assert meta["algorithm"] == "fmnist_cnn.strategy:FedAvgM"


def test_python_api_runs_both_jobs(example: Path) -> None:
    result = _run(example, "run_python.py", "--data", "data", "--out", "py", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(("mistnet:", "fedavg:"))]
    assert [line.split(":")[0] for line in lines] == ["mistnet", "fedavg"]
    assert all(", accuracy " in line and "Succeeded" in line for line in lines), lines
    for name in ("mistnet", "fedavg"):
        _succeeded(example / "py" / f"run-{name}" / "status.json")
        assert (example / "py" / "model" / f"cnn-{name}.pth").exists()
