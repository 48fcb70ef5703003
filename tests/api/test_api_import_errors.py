"""Import-path mistakes in a job: one line naming the setting, exit 2 from `fedmist run` -- found before any
process starts, or (for what only running the user's code can show) by the worker, which fails the job at once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fedmist.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "custom-model"
ENV = "spec.aggregationWorker.template.spec.containers[0].env"

BADCODE = '''
from torch import nn
from fedmist.training import Trainer


def not_a_model():
    return 42


class Opaque(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def int_loader(split, root=None):
    return 7


class NotATrainer:
    pass


class HalfTrainer(Trainer):
    def train(self, model, inputs, labels, config, cancel):
        raise NotImplementedError


class NotAStrategy:
    pass
'''


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The example's package and manifests, plus a module of broken user code, in a fresh folder."""
    root = tmp_path_factory.mktemp("badjob")
    shutil.copytree(EXAMPLE / "fmnist_cnn", root / "fmnist_cnn")
    for name in ("mistnet.yaml", "fedavg.yaml"):
        shutil.copy(EXAMPLE / name, root / name)
    (root / "badcode.py").write_text(BADCODE)
    return root


def _job(folder: Path, base: str, old: str, new: str) -> Path:
    text = (folder / base).read_text()
    assert old in text, old
    path = folder / f"case-{abs(hash((base, old, new)))}.yaml"
    path.write_text(text.replace(old, new))
    return path


CASES = [
    ("fedavg.yaml", "value: fmnist_cnn.model:small_cnn", "value: nosuch_pkg.nets:cnn", f"{ENV}.model",
     "model factory 'nosuch_pkg.nets:cnn': cannot import module 'nosuch_pkg.nets' (No module named 'nosuch_pkg'); "
     "put the package beside the job file, in the current folder or on PYTHONPATH"),
    ("fedavg.yaml", "value: fmnist_cnn.model:small_cnn", "value: fmnist_cnn.model:smal_cnn", f"{ENV}.model",
     "model factory 'fmnist_cnn.model:smal_cnn': module 'fmnist_cnn.model' has no attribute 'smal_cnn'"),
    ("fedavg.yaml", "value: fmnist_cnn.model:small_cnn", "value: badcode:not_a_model", f"{ENV}.model",
     "model factory 'badcode:not_a_model' returned int, not a torch.nn.Module"),
    ("mistnet.yaml", "value: fmnist_cnn.model:small_cnn", "value: badcode:Opaque", f"{ENV}.model",
     "model 'badcode:Opaque' (Opaque) cannot be split for MistNet: make it an nn.Sequential, or give it a method "
     "fedmist_stages() returning its stages in order, or fedmist_split(cut_layer) returning (edge, cloud) modules"),
    ("mistnet.yaml", "value: pool1", 'value: "12"', f"{ENV}.model",
     "cut_layer 12 is out of range for a model with 10 modules: use 1..9 (index of the first cloud module) so "
     "that both parts are non-empty"),
    ("fedavg.yaml", "value: fmnist_cnn.training:FlipSmoothTrainer", "value: badcode:NotATrainer", f"{ENV}.trainer",
     "trainer 'badcode:NotATrainer' must be a subclass of fedmist.training.Trainer, got NotATrainer"),
    ("fedavg.yaml", "value: fmnist_cnn.training:FlipSmoothTrainer", "value: badcode:HalfTrainer", f"{ENV}.trainer",
     "trainer 'badcode:HalfTrainer' is abstract: implement evaluate"),
    ("fedavg.yaml", "value: fmnist_cnn.strategy:FedAvgM", "value: badcode:NotAStrategy",
     f"{ENV}.aggregation_algorithm",
     "strategy 'badcode:NotAStrategy' is not a subclass of fedmist.strategy.Strategy"),
]


@pytest.mark.parametrize(("base", "old", "new", "field", "problem"), CASES,
                         ids=["missing-module", "wrong-attribute", "not-a-module", "unsplittable", "cut-out-of-range",
                              "not-a-trainer", "abstract-trainer", "not-a-strategy"])
def test_bad_import_paths_are_one_line_and_exit_2_before_anything_starts(folder, base, old, new, field, problem,
                                                                         capsys, tmp_path):
    job = _job(folder, base, old, new)
    name = "custom-cnn-mistnet" if base == "mistnet.yaml" else "custom-cnn-fedavg"
    for command in (["validate", "-f", str(job)], ["run", "-f", str(job), "--workdir", str(tmp_path / "run")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err == f"error: {job}: FederatedLearningJob/{name}: {field}: {problem}\n"
    assert not (tmp_path / "run").exists()  # refused before any worker process was started


def test_missing_loader_names_the_dataset(folder, capsys):
    job = _job(folder, "fedavg.yaml", "url: fmnist_cnn.data:load_pngs?split=edge2", "url: badcode:load_nothing?split=edge2")
    assert main(["validate", "-f", str(job)]) == 2
    assert capsys.readouterr().err == (f"error: {job}: Dataset/edge2-pngs: spec.url: dataset loader "
                                       "'badcode:load_nothing': module 'badcode' has no attribute 'load_nothing'\n")


def test_loader_returning_no_dataset_fails_the_job_in_the_worker_with_exit_2(folder, tmp_path):
    """Only calling the loader shows what it returns: the edge exits 2 and the launcher stops the job at once
    (no restarts, no waiting for a quorum), with the worker's one-line reason."""
    test_env = "              - name: TEST_DATASET_URL\n                value: fmnist_cnn.data:load_pngs?split=test&root=./data\n"
    text = (folder / "fedavg.yaml").read_text()
    assert test_env in text
    text = text.replace(test_env, "").replace("fmnist_cnn.data:load_pngs", "badcode:int_loader")  # edges only
    job = folder / "int-loader.yaml"
    job.write_text(text)
    result = subprocess.run([sys.executable, "-m", "fedmist", "run", "-f", str(job), "--workdir", str(tmp_path / "run"),
                             "--no-progress", "--timeout", "120"], capture_output=True, text=True, timeout=180,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["phase"] == "Failed"
    message = status["conditions"][-1]["message"]
    assert "(trainer) exited with code 2: dataset edge" in message, message
    assert message.endswith("returned int, not a torch Dataset with len() and [index] (items (input tensor, int label))")
    assert all(w["restarts"] == 0 for w in status["workers"].values())
