import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fedmist.spec import ManifestError, load_manifests

WriteJob = Callable[..., Path]


def error_of(path: Path, **kwargs: object) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifests([path], **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_base_job_loads_without_warnings(write_job: WriteJob) -> None:
    bundle = load_manifests([write_job()])
    assert sorted(bundle.datasets) == ["edge1", "edge2"] and list(bundle.models) == ["lenet"]
    assert list(bundle.jobs) == ["mnist-mistnet"] and bundle.warnings == []
    assert bundle.source_of("Dataset", "edge1") == write_job()


def test_relative_url_is_resolved_against_the_manifest_folder(write_job: WriteJob, tmp_path: Path) -> None:
    bundle = load_manifests([write_job()])
    assert bundle.datasets["edge1"].spec.url == str(tmp_path / "data" / "edge1")
    assert bundle.datasets["edge2"].spec.url == "/data/edge2"  # absolute, no map: unchanged


def test_path_map_longest_prefix_wins(write_job: WriteJob, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_job(replace=(("url: /data/edge2", "url: /data/edge2/train"),
                              ("url: /model/lenet5.pth", "url: /database/lenet5.pth")))
    bundle = load_manifests([path], {"/data": "/mnt/all", "/data/edge2/": "local/e2", "/": "/root-map"})
    assert bundle.datasets["edge2"].spec.url == os.path.join(tmp_path, "local", "e2", "train")
    # "/data" must not capture "/database": only whole path components match; "/" is the fallback.
    assert bundle.models["lenet"].spec.url == "/root-map/database/lenet5.pth"


def test_s3_urls_are_left_alone(write_job: WriteJob) -> None:
    path = write_job(replace=(("url: /data/edge2", "url: s3://bucket/edge2"),))
    assert load_manifests([path], {"/": "/x"}).datasets["edge2"].spec.url == "s3://bucket/edge2"


def test_documents_from_several_files(write_job: WriteJob, job_yaml: str) -> None:
    first, _, rest = job_yaml.partition("---\n")
    a = write_job(first, name="a.yaml")
    b = write_job(rest, name="b.yaml")
    bundle = load_manifests([a, b])
    assert bundle.source_of("Dataset", "edge1") == a and bundle.source_of("FederatedLearningJob", "mnist-mistnet") == b


def test_duplicate_name(write_job: WriteJob, job_yaml: str) -> None:
    first, _, _ = job_yaml.partition("---\n")
    a = write_job(first, name="a.yaml")
    b = write_job(job_yaml, name="b.yaml")
    with pytest.raises(ManifestError) as info:
        load_manifests([a, b])
    assert str(info.value) == (f"{b}: Dataset/edge1: metadata.name: duplicate Dataset name; first defined in {a} "
                               "(got 'edge1')")


def test_yaml_syntax_error_names_file_and_line(write_job: WriteJob) -> None:
    path = write_job(replace=(("  format: pth", "  format: pth: x"),))
    assert error_of(path) == f"{path}:23: YAML syntax error: mapping values are not allowed here"
    path = write_job(replace=(("  format: pth", "  format: [pth"),))
    assert error_of(path) == (f"{path}:24: YAML syntax error: expected ',' or ']', but got '<document start>' "
                              "(while parsing a flow sequence started at line 23)")


def test_duplicate_yaml_key_is_an_error(write_job: WriteJob) -> None:
    path = write_job(replace=(("  format: idx\n", "  format: idx\n  format: csv\n"),))
    assert error_of(path) == f"{path}:8: YAML syntax error: duplicate key 'format'"


def test_wrong_type(write_job: WriteJob) -> None:
    path = write_job(replace=(("          nodeName: edge\n", "          nodeName: [edge]\n"),))
    assert error_of(path) == (f"{path}: FederatedLearningJob/mnist-mistnet: spec.trainingWorkers[0].template.spec"
                              ".nodeName: must be a string (got ['edge'])")


def test_missing_required_field(write_job: WriteJob) -> None:
    path = write_job(replace=(("  url: /model/lenet5.pth\n", ""),))
    assert error_of(path) == f"{path}: Model/lenet: spec.url: required field is missing"


def test_unparsable_memory_quantity(write_job: WriteJob) -> None:
    path = write_job(replace=(("          - image: fedmist\n", "          - image: fedmist\n"
                               "            resources:\n              limits:\n                memory: 8GB\n"),))
    assert error_of(path) == (
        f"{path}: FederatedLearningJob/mnist-mistnet: spec.aggregationWorker.template.spec.containers[0].resources"
        ".limits.memory: not a Kubernetes quantity (e.g. 512Mi, 8Gi, 2G, 1e9) (got '8GB')")


def test_bad_dataset_format_and_api_version(write_job: WriteJob) -> None:
    path = write_job(replace=(("  format: idx", "  format: parquet"),))
    assert error_of(path) == f"{path}: Dataset/edge1: spec.format: must be one of txt, csv, dir, idx, python (got 'parquet')"
    path = write_job(replace=(("apiVersion: sedna.io/v1alpha1", "apiVersion: sedna.io/v1"),))
    assert error_of(path) == f"{path}: Dataset/edge1: apiVersion: must be sedna.io/v1alpha1 (got 'sedna.io/v1')"


def test_flattened_indentation_gets_a_hint(write_job: WriteJob) -> None:
    path = write_job("apiVersion: sedna.io/v1alpha1\nkind: Dataset\nmetadata:\nname: d\nspec:\nurl: /x\n")
    assert error_of(path) == (f"{path}: Dataset/d: metadata: is empty and 'name' sits at the top level; "
                              "the YAML indentation looks flattened")


def test_unknown_fields_and_kinds_are_warned_and_ignored(write_job: WriteJob, job_yaml: str) -> None:
    path = write_job(job_yaml + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
                     replace=(("  format: idx\n", "  format: idx\n  fromat: csv\n"),
                              ("          - image: fedmist\n", "          - image: fedmist\n"
                               "            imagePullPolicy: IfNotPresent\n            envFrom: []\n")))
    bundle = load_manifests([path])
    assert [str(w) for w in bundle.warnings] == [
        f"{path}: Dataset/edge1: spec.fromat: unknown field, ignored",
        f"{path}: FederatedLearningJob/mnist-mistnet: spec.aggregationWorker.template.spec.containers[0].envFrom: "
        "envFrom is not supported locally; ignored (list env entries instead)",
        f"{path}: cm: kind: unknown kind 'ConfigMap'; document skipped",
    ]


def test_secret_data_is_decoded_and_string_data_wins(write_job: WriteJob) -> None:
    path = write_job("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  annotations:\n    s3-usehttps: 0\n"
                     "data:\n  ACCESS_KEY_ID: YWtpZA==\n  SECRET_ACCESS_KEY: b2xk\n"
                     "stringData:\n  SECRET_ACCESS_KEY: new\n")
    secret = load_manifests([path]).secrets["s"]
    assert secret.secret_values == {"ACCESS_KEY_ID": "akid", "SECRET_ACCESS_KEY": "new"}
    assert secret.s3_use_https is False
    bad = write_job("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  K: '***'\n", name="bad.yaml")
    assert error_of(bad) == f"{bad}: Secret/s: data: value of 'K' is not base64-encoded UTF-8 text (got {{'K': '***'}})"


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert error_of(missing) == f"{missing}: cannot read manifest: No such file or directory"
