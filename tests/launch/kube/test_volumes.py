"""fedmist.launch.kube.volumes: each worker mounts only the folders of its own urls, read-only but the output."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fedmist.launch.kube.volumes import (
    HostMount,
    aggregator_state_volume,
    host_mounts,
    trainer_state_volume,
    volume_objects,
)
from fedmist.spec import load_manifests, resolve_job
from fedmist.spec.errors import ManifestError

JOB = """\
apiVersion: sedna.io/v1alpha1
kind: Dataset
metadata: {name: edge1}
spec: {url: "DATA1", format: FORMAT1}
---
apiVersion: sedna.io/v1alpha1
kind: Model
metadata: {name: lenet}
spec: {url: MODEL, format: pth}
---
apiVersion: sedna.io/v1alpha1
kind: FederatedLearningJob
metadata: {name: j}
spec:
  pretrainedModel: {name: lenet}
  aggregationWorker:
    model: {name: lenet}
    template:
      spec:
        containers:
          - image: fedmist
            env:
              - {name: aggregation_algorithm, value: fedavg}
              - {name: TEST_DATASET_URL, value: "TESTURL"}
  trainingWorkers:
    - dataset: {name: edge1}
      template:
        spec:
          containers: [{image: fedmist}]
"""


def _job(tmp_path: Path, data: str = "/data/1/mnist", fmt: str = "idx", model: str = "/models/out/m.pth",
         test: str = "/data/test/index.txt"):
    text = JOB.replace("DATA1", data).replace("FORMAT1", fmt).replace("MODEL", model).replace("TESTURL", test)
    path = tmp_path / "job.yaml"
    path.write_text(textwrap.dedent(text))
    job = resolve_job(load_manifests([path]), environ={})
    return job, {w.role: w for w in job.workers}


def test_the_aggregator_mounts_the_model_folder_writable_and_its_inputs_read_only(tmp_path) -> None:
    job, workers = _job(tmp_path)
    assert host_mounts(job, workers["aggregator"]) == [
        HostMount("/models/out", False, "Model.spec.url"),  # the model and the pretrained weights share it
        HostMount("/data/test", True, "TEST_DATASET_URL"),
    ]


def test_a_trainer_mounts_its_folder_dataset_itself_and_a_file_dataset_its_folder(tmp_path) -> None:
    job, workers = _job(tmp_path)
    assert host_mounts(job, workers["trainer"]) == [
        HostMount("/data/1/mnist", True, "spec.trainingWorkers[0].dataset")]
    job, workers = _job(tmp_path, data="/data/2/index.txt", fmt="txt")
    assert host_mounts(job, workers["trainer"]) == [HostMount("/data/2", True, "spec.trainingWorkers[0].dataset")]


def test_a_loaders_path_options_are_mounted_and_remote_urls_are_not(tmp_path) -> None:
    job, workers = _job(tmp_path, data="pkg.mod:load?root=/data/pngs&split=edge1", fmt="python",
                        test="s3://bucket/test")
    assert host_mounts(job, workers["trainer"]) == [HostMount("/data/pngs", True, "spec.trainingWorkers[0].dataset")]
    assert [m.path for m in host_mounts(job, workers["aggregator"])] == ["/models/out"]


def test_a_file_at_the_node_root_would_mount_the_root_and_is_refused(tmp_path) -> None:
    job, workers = _job(tmp_path, model="/m.pth")
    with pytest.raises(ManifestError) as info:
        host_mounts(job, workers["aggregator"])
    assert str(info.value).endswith("Model.spec.url: would mount the node's root folder; put the file in a folder "
                                    "of its own (got '/m.pth')")


def test_volume_names_are_unique_dns_labels_from_the_paths() -> None:
    mounts = [HostMount("/data/a_b", True, "x"), HostMount("/data/a-b", False, "y")]
    volumes, volume_mounts = volume_objects(mounts)
    assert [v["hostPath"] for v in volumes] == [{"path": "/data/a_b", "type": "Directory"},
                                               {"path": "/data/a-b", "type": "DirectoryOrCreate"}]
    names = [v["name"] for v in volumes]
    assert len(set(names)) == 2 and all(n.startswith("host-data-a-b") and len(n) <= 63 for n in names)
    assert volume_mounts == [{"name": names[0], "mountPath": "/data/a_b", "readOnly": True},
                             {"name": names[1], "mountPath": "/data/a-b", "readOnly": False}]


def test_the_trainer_state_lives_on_its_node_per_namespace_and_worker() -> None:
    assert trainer_state_volume("Prod", "edge_1") == {
        "name": "fedmist-state",
        "hostPath": {"path": "/var/lib/fedmist/edges/prod/edge-1", "type": "DirectoryOrCreate"}}
    assert trainer_state_volume("", "")["hostPath"]["path"] == "/var/lib/fedmist/edges/default/worker"


def test_the_aggregator_state_lives_on_its_node_per_job_uid_and_spec() -> None:
    assert aggregator_state_volume("Prod", "1b2c-3D", "ab12") == {
        "name": "fedmist-state",
        "hostPath": {"path": "/var/lib/fedmist/jobs/prod/1b2c-3d/ab12", "type": "DirectoryOrCreate"}}
    assert aggregator_state_volume("", "", "")["hostPath"]["path"] == "/var/lib/fedmist/jobs/default/job/spec"
