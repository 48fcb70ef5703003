"""fedmist.Job built in Python and loaded from manifests: the same validated job, no torch at import."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

import fedmist
from fedmist.api import Edge, Job
from fedmist.spec.errors import ManifestError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "custom-model"


def toy_loader(split: str, root: str = "") -> list:
    return []


def test_import_fedmist_and_building_a_job_do_not_import_torch() -> None:
    code = ("import sys, fedmist; job = fedmist.Job('j', edges=['/d/e1', '/d/e2'], algorithm='fedavg'); "
            "job.describe(); assert 'torch' not in sys.modules, 'torch imported'; print(job.algorithm)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "fedavg", result.stderr


def test_python_objects_become_import_paths_and_loader_options(tmp_path: Path) -> None:
    pngs = functools.partial(toy_loader, root="/data/pngs")
    job = Job("py-job", algorithm="mistnet", model="fedmist.models.lenet:lenet5", epsilon=float("inf"),
              cut_layer=3, edges=[Edge(pngs, split="edge1"), Edge(pngs, name="shop-2", split="edge2", env={"seed": 3})],
              test_data=pngs, pretrained=tmp_path / "pre.pth", model_url=tmp_path / "out.pth", epochs=2,
              base_dir=tmp_path)
    docs = {(d["kind"], d["metadata"]["name"]): d for d in job.manifests()}
    assert docs[("Dataset", "edge1-data")]["spec"] == {
        "url": f"{__name__}:toy_loader?split=edge1&root=/data/pngs", "format": "python", "nodeName": "edge1"}
    assert [t.name for t in job.resolved.trainers] == ["edge1", "shop-2"]
    agg_env = job.resolved.aggregator.env
    assert agg_env["TEST_DATASET_URL"] == f"{__name__}:toy_loader?root=/data/pngs"  # split 'test' by default
    assert agg_env["epsilon"] == "inf" and agg_env["aggregation_algorithm"] == "mistnet"
    assert job.resolved.trainers[1].env == {"aggregation_algorithm": "mistnet", "epsilon": "inf", "seed": "3"}
    assert job.model_url == tmp_path / "out.pth"
    assert str(Path(__file__).parent) in job.python_path  # workers import this test module from there


def test_to_yaml_round_trips_through_from_manifests(tmp_path: Path) -> None:
    job = Job("rt", edges=["./e1", Edge("./e2/index.txt")], rounds=4, learning_rate=0.05,
              params={"min_clients": 2}, base_dir=tmp_path)
    path = tmp_path / "job.yaml"
    path.write_text(job.to_yaml())
    again = Job.from_manifests([path])
    assert again.describe() == job.describe()
    assert again.resolved.trainers[1].dataset_format == "txt"
    assert again.resolved.aggregator.env == job.resolved.aggregator.env
    with pytest.raises(ValueError, match="was loaded from"):
        again.manifests()


def test_from_manifests_keeps_loader_urls_and_resolves_only_their_path_options(tmp_path: Path) -> None:
    job = Job.from_manifests([EXAMPLE / "mistnet.yaml"])
    edge1 = job.resolved.trainers[0]
    assert edge1.dataset_format == "python"
    assert edge1.dataset_url == f"fmnist_cnn.data:load_pngs?split=edge1&root={EXAMPLE / 'data'}"
    assert job.resolved.aggregator.env["TEST_DATASET_URL"] == f"fmnist_cnn.data:load_pngs?split=test&root={EXAMPLE / 'data'}"
    text = (EXAMPLE / "mistnet.yaml").read_text().replace("root=./data", "root=/data/pngs")
    (tmp_path / "job.yaml").write_text(text)
    mapped = Job.from_manifests(tmp_path / "job.yaml", path_map={"/data": str(tmp_path / "d")})
    assert mapped.resolved.trainers[1].dataset_url == f"fmnist_cnn.data:load_pngs?split=edge2&root={tmp_path / 'd' / 'pngs'}"
    # Only a job folder that holds the named package goes on the workers' PYTHONPATH (it shadows everything)
    assert mapped.python_path == () and job.python_path == (str(EXAMPLE),)
    assert Job.from_manifests(REPO / "examples" / "mnist-fedavg" / "job.yaml").python_path == ()


def test_python_dataset_url_must_be_an_import_path(tmp_path: Path) -> None:
    text = (EXAMPLE / "fedavg.yaml").read_text().replace(
        "url: fmnist_cnn.data:load_pngs?split=edge1&root=./data", "url: ./data/edge1")
    (tmp_path / "job.yaml").write_text(text)
    with pytest.raises(ManifestError) as info:
        Job.from_manifests(tmp_path / "job.yaml")
    assert str(info.value) == (
        f"{tmp_path / 'job.yaml'}: Dataset/edge1-pngs: spec.url: dataset loader './data/edge1' must look like "
        "'package.module:name'; format python takes 'package.module:loader[?name=value&...]' (got './data/edge1')")


def test_objects_workers_cannot_import_are_refused() -> None:
    with pytest.raises(ValueError, match="lambda or nested definition"):
        Job("j", edges=["/d"], model=lambda: None)
    with pytest.raises(ValueError, match=r"bind loader options by keyword"):
        Job("j", edges=[Edge(functools.partial(toy_loader, "x"))])


def test_lazy_names_and_dir() -> None:
    assert fedmist.Job is Job and "Job" in dir(fedmist)
    with pytest.raises(AttributeError):
        fedmist.Nope  # noqa: B018


def test_api_reference_page_is_generated_from_the_current_docstrings() -> None:
    from fedmist.apidoc import render

    page = (REPO / "docs" / "API.md").read_text()
    assert page == render(), "docs/API.md is stale: run `make api-docs`"
    assert "### class `Trainer()`" in page and "fedmist_stages()" in page
