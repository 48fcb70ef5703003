"""fedmist.preflight: a job's import paths are checked before any worker starts, errors naming the field."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from fedmist.preflight import check_job, import_paths, user_code_folders
from fedmist.spec import load_manifests, resolve_job
from fedmist.spec.errors import ManifestError

JOB = """\
apiVersion: sedna.io/v1alpha1
kind: Dataset
metadata: {name: edge1}
spec: {url: "DATAURL", format: FORMAT}
---
apiVersion: sedna.io/v1alpha1
kind: Model
metadata: {name: m}
spec: {url: /models/m.pth, format: pth}
---
apiVersion: sedna.io/v1alpha1
kind: FederatedLearningJob
metadata: {name: j}
spec:
  aggregationWorker:
    model: {name: m}
    template:
      spec:
        containers:
          - image: fedmist
            env:
              - {name: aggregation_algorithm, value: ALGO}
              - {name: Model, value: "MODELPATH"}
              - {name: epsilon, value: "2"}
              - {name: cut_layer, value: "CUT"}
  trainingWorkers:
    - dataset: {name: edge1}
      template:
        spec:
          containers:
            - image: fedmist
              env:
                - {name: epsilon, value: "2"}
"""

USER_CODE = """\
import torch

def net(num_classes=10):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.ReLU(),
                               torch.nn.Linear(3, num_classes))

def load(root=None, split="train"):
    return None

NOT_CALLABLE = 3
"""


@pytest.fixture
def job_folder(tmp_path: Path):
    (tmp_path / "ut_preflight_pkg").mkdir()
    (tmp_path / "ut_preflight_pkg" / "__init__.py").write_text(USER_CODE)
    yield tmp_path
    sys.modules.pop("ut_preflight_pkg", None)


def _job(folder: Path, model: str = "ut_preflight_pkg:net", algo: str = "mistnet", cut: str = "2",
         data: str = "./data", fmt: str = "idx"):
    text = (JOB.replace("MODELPATH", model).replace("ALGO", algo).replace("CUT", cut).replace("DATAURL", data)
            .replace("FORMAT", fmt))
    (folder / "job.yaml").write_text(textwrap.dedent(text))
    return resolve_job(load_manifests([folder / "job.yaml"]), environ={})


def _error(job) -> str:
    with pytest.raises(ManifestError) as info:
        check_job(job)
    return str(info.value)


def test_a_sound_job_passes_and_names_its_import_paths(job_folder: Path) -> None:
    job = _job(job_folder, data="ut_preflight_pkg:load?root=./pngs", fmt="python")
    check_job(job)
    assert import_paths(job) == ["ut_preflight_pkg:net", f"ut_preflight_pkg:load?root={job_folder}/pngs"]
    assert user_code_folders(job, [job_folder, job_folder / "ut_preflight_pkg"]) == [str(job_folder.resolve())]


def test_a_missing_factory_names_the_field_as_the_user_spelled_it(job_folder: Path) -> None:
    message = _error(_job(job_folder, model="ut_preflight_pkg:bild"))
    assert message == (f"{job_folder / 'job.yaml'}: FederatedLearningJob/j: "
                       "spec.aggregationWorker.template.spec.containers[0].env.Model: model factory "
                       "'ut_preflight_pkg:bild': module 'ut_preflight_pkg' has no attribute 'bild'")


def test_a_mistnet_model_that_cannot_be_cut_is_refused_before_start(job_folder: Path) -> None:
    message = _error(_job(job_folder, cut="9"))
    assert message.endswith("env.Model: cut_layer 9 is out of range for a model with 4 modules: use 1..3 (index of "
                            "the first cloud module) so that both parts are non-empty")
    check_job(_job(job_folder, algo="fedavg", cut="9"))  # FedAvg never cuts the model


def test_a_python_loader_that_is_not_callable_names_its_dataset(job_folder: Path) -> None:
    message = _error(_job(job_folder, data="ut_preflight_pkg:NOT_CALLABLE", fmt="python"))
    assert message == (f"{job_folder / 'job.yaml'}: Dataset/edge1: spec.url: dataset loader "
                       "'ut_preflight_pkg:NOT_CALLABLE' is a int, not a callable")


def test_built_in_jobs_name_no_import_paths(job_folder: Path) -> None:
    job = _job(job_folder, model="lenet5", cut="3")
    check_job(job)
    assert import_paths(job) == [] and user_code_folders(job, [job_folder]) == []
