"""Rendered objects of the example jobs: valid Kubernetes objects carrying exactly the env contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kube_helpers import MNIST, SEED, SEED_NODES, by_name, env_of, load, render

from fedmist.launch.kube import names
from fedmist.launch.kube.render import RenderOptions, worker_pod
from fedmist.spec.errors import ManifestError

K8S_VERSION = "1.30"


def _validate(objects: list[dict]) -> None:
    import kubernetes_validate
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_mnist_objects_pass_kubernetes_schemas(mnist_objects: list[dict]) -> None:
    assert [(o["kind"], o["metadata"]["name"]) for o in mnist_objects] == [
        ("Secret", "mnist-mistnet-fedmist-token"), ("Service", "mnist-mistnet-aggregation"),
        ("Pod", "mnist-mistnet-cloud"), ("Pod", "mnist-mistnet-edge1"), ("Pod", "mnist-mistnet-edge2")]
    _validate(mnist_objects)


def test_seed_objects_pass_kubernetes_schemas(seed_objects: list[dict]) -> None:
    assert [o["metadata"]["name"] for o in seed_objects] == [
        "yolo-v5-fedmist-token", "yolo-v5-aggregation", "yolo-v5-cloud-node-1", "yolo-v5-edge-node-1",
        "yolo-v5-edge-node-2"]
    _validate(seed_objects)


def test_service_is_sednas_aggregation_service(mnist_objects: list[dict]) -> None:
    service = by_name(mnist_objects, "Service", "mnist-mistnet-aggregation")
    assert service["spec"] == {
        "selector": {names.LABEL_JOB: "mnist-mistnet", names.LABEL_TYPE: "aggregation"},
        "ports": [{"name": "tcp-0", "port": 7363, "targetPort": 7363, "protocol": "TCP"}]}


def test_labels_and_owner_references(mnist_objects: list[dict]) -> None:
    owner = {"apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "name": "mnist-mistnet",
             "uid": names.UID_PLACEHOLDER, "controller": True, "blockOwnerDeletion": True}
    for obj in mnist_objects:
        assert obj["metadata"]["ownerReferences"] == [owner]
        assert obj["metadata"]["labels"][names.LABEL_JOB] == "mnist-mistnet"
        assert obj["metadata"]["namespace"] == "default"
    assert by_name(mnist_objects, "Pod", "mnist-mistnet-cloud")["metadata"]["labels"][names.LABEL_TYPE] == "aggregation"
    assert by_name(mnist_objects, "Pod", "mnist-mistnet-edge2")["metadata"]["labels"] == {
        names.LABEL_JOB: "mnist-mistnet", names.LABEL_TYPE: "train", names.LABEL_WORKER: "edge2"}


def test_worker_pods_carry_no_api_token(mnist_objects: list[dict]) -> None:
    """Workers never call the API: a real server's ServiceAccount admission would otherwise mount a token
    (and a projected volume) into every worker pod."""
    pods = [o for o in mnist_objects if o["kind"] == "Pod"]
    assert len(pods) == 3 and all(p["spec"]["automountServiceAccountToken"] is False for p in pods)


def test_every_attempt_of_a_worker_has_the_same_environment() -> None:
    """A checkpoint is resumed only under the same job digest, which covers the worker's environment: the
    pod's HOSTNAME and the service-link variables must not change between attempts."""
    loaded = load(MNIST)
    options = RenderOptions(token="t", spec_hash=loaded.spec_hash)
    first, retry = (worker_pod(loaded.job, loaded.job.aggregator, loaded.raw_spec, None, options, attempt=n)
                    for n in (0, 3))
    assert retry["metadata"]["name"] == "mnist-mistnet-cloud-3"
    assert first["spec"]["hostname"] == retry["spec"]["hostname"] == "mnist-mistnet-cloud"
    assert first["spec"]["enableServiceLinks"] is False
    assert first["spec"]["containers"][0]["env"] == retry["spec"]["containers"][0]["env"]


def test_trainer_env_contract(mnist_objects: list[dict]) -> None:
    pod = by_name(mnist_objects, "Pod", "mnist-mistnet-edge1")
    assert env_of(pod) == {
        "aggregation_algorithm": "mistnet", "cut_layer": "3", "epsilon": "2",
        "JOB_NAME": "mnist-mistnet", "NAMESPACE": "default", "WORKER_NAME": "edge1", "PARTICIPANTS_COUNT": "2",
        "TRANSMITTER": "ws", "MODEL_URL": "/model/lenet5-mistnet.pth", "PRETRAINED_MODEL_URL": "/pretrained/lenet5.pth",
        "AGG_IP": "mnist-mistnet-aggregation.default", "AGG_PORT": "7363", "TRAIN_DATASET_URL": "/data/edge1",
        "DATASET_NAME": "fmnist-edge1", "DATASET_FORMAT": "idx", "MODEL_NAME": "lenet5-mistnet",
        "FEDMIST_STATE_DIR": "/var/lib/fedmist/state",
        "FEDMIST_TOKEN": {"secretKeyRef": {"name": "mnist-mistnet-fedmist-token", "key": "token"}},
    }
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["fedmist"] and container["args"] == ["worker", "train"]
    assert container["image"] == "fedmist/worker:0.1" and container["resources"] == {"limits": {"memory": "1Gi"}}
    assert pod["spec"]["nodeName"] == "edge1" and pod["spec"]["restartPolicy"] == "Never"


def test_aggregator_env_ports_and_status_sidecar(mnist_objects: list[dict]) -> None:
    pod = by_name(mnist_objects, "Pod", "mnist-mistnet-cloud")
    env = env_of(pod)
    assert env["AGG_BIND_PORT"] == "7363" and "AGG_IP" not in env
    assert env["FEDMIST_STATUS_FILE"] == "/var/run/fedmist/report.json"
    assert env["TEST_DATASET_URL"] == "/data/test" and env["epochs"] == "6"
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["worker", "aggregate"]
    assert {"name": "tcp-0", "containerPort": 7363, "protocol": "TCP"} in container["ports"]
    sidecar = pod["spec"]["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always" and sidecar["command"][-1] == "fedmist.launch.kube.statusd"


def test_host_paths_mount_only_the_files_own_folder(mnist_objects: list[dict], seed_objects: list[dict]) -> None:
    agg = by_name(mnist_objects, "Pod", "mnist-mistnet-cloud")
    host = {v["hostPath"]["path"]: v["hostPath"]["type"] for v in agg["spec"]["volumes"]
            if "hostPath" in v and v["name"] != "fedmist-state"}
    assert host == {"/model": "DirectoryOrCreate", "/pretrained": "Directory", "/data/test": "Directory"}
    mounts = {m["mountPath"]: m.get("readOnly") for m in agg["spec"]["containers"][0]["volumeMounts"]}
    assert mounts == {"/model": False, "/pretrained": True, "/data/test": True, "/var/lib/fedmist": None,
                      "/var/run/fedmist": None}
    edge = by_name(seed_objects, "Pod", "yolo-v5-edge-node-2")
    assert [v["hostPath"] for v in edge["spec"]["volumes"] if "hostPath" in v and v["name"] != "fedmist-state"] == [
        {"path": "/data/2/COCO", "type": "Directory"}]
    for obj in [*mnist_objects, *seed_objects]:
        for volume in obj.get("spec", {}).get("volumes", []):
            assert volume.get("hostPath", {}).get("path") != "/"


def test_trainer_state_outlives_the_pod_on_its_edge_node(mnist_objects: list[dict], seed_objects: list[dict]) -> None:
    """The noise seed and privacy ledger sit in a hostPath folder of the trainer's own node (per namespace and
    worker), so a restarted pod resumes with the same seed; the aggregator's checkpoints in one of its node per
    job uid and spec digest, so a recreated aggregator resumes but a new job or a changed spec starts afresh."""
    for objects, job, workers in ((mnist_objects, "mnist-mistnet", ("edge1", "edge2")),
                                  (seed_objects, "yolo-v5", ("edge-node-1", "edge-node-2"))):
        for worker in workers:
            pod = by_name(objects, "Pod", f"{job}-{worker}")
            [state] = [v for v in pod["spec"]["volumes"] if v["name"] == "fedmist-state"]
            assert state == {"name": "fedmist-state", "hostPath": {
                "path": f"/var/lib/fedmist/edges/default/{worker}", "type": "DirectoryOrCreate"}}
            assert {"name": "fedmist-state", "mountPath": "/var/lib/fedmist"} in \
                pod["spec"]["containers"][0]["volumeMounts"]
            assert env_of(pod)["FEDMIST_STATE_DIR"] == "/var/lib/fedmist/state"
    agg = by_name(mnist_objects, "Pod", "mnist-mistnet-cloud")
    [state] = [v for v in agg["spec"]["volumes"] if v["name"] == "fedmist-state"]
    digest = agg["metadata"]["annotations"][names.ANNOTATION_SPEC_HASH]
    assert state["hostPath"] == {"path": f"/var/lib/fedmist/jobs/default/{names.UID_PLACEHOLDER}/{digest}",
                                 "type": "DirectoryOrCreate"}
    _validate(mnist_objects + seed_objects)


def test_s3_credentials_only_by_secret_key_ref(seed_objects: list[dict]) -> None:
    text = yaml.safe_dump_all(seed_objects)
    assert "fedmist-local" not in text and "fedmist-local-secret" not in text
    for pod in (o for o in seed_objects if o["kind"] == "Pod"):
        env = env_of(pod)
        assert env["ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "mysecret", "key": "ACCESS_KEY_ID"}}
        assert env["SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "mysecret", "key": "SECRET_ACCESS_KEY"}}
        assert env["S3_ENDPOINT_URL"] == "http://127.0.0.1:9000" and env["TRANSMITTER"] == "s3"
        assert env["AGG_DATA_PATH"] == "s3://sedna/fl/aggregation_data"
    edge = by_name(seed_objects, "Pod", "yolo-v5-edge-node-1")
    container = edge["spec"]["containers"][0]
    assert container["args"] == ["worker", "train", "-i", "1"]
    assert container["image"] == "kubeedge/sedna-example-federated-learning-mistnet-yolo-client:v0.4.0"
    assert container["imagePullPolicy"] == "IfNotPresent" and edge["spec"]["nodeName"] == "edge-node-1"


def test_image_override_and_no_owner_refs() -> None:
    objects = render(SEED, SEED_NODES, image="registry.local/fedmist:1", owner_refs=False)
    pods = [o for o in objects if o["kind"] == "Pod"]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"registry.local/fedmist:1"}
    assert all("ownerReferences" not in o["metadata"] for o in objects)


def test_unset_node_variable_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError,
                       match=r"spec.aggregationWorker.template.spec.nodeName: is an unset shell variable"):
        render(SEED, {})


def test_model_at_the_root_is_refused(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(MNIST.read_text().replace("/model/lenet5-mistnet.pth", "/lenet5-mistnet.pth"))
    with pytest.raises(ManifestError, match="would mount the node's root folder"):
        render(job)


def test_txt_dataset_mounts_its_index_folder(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(MNIST.read_text().replace("url: /data/edge1\n  format: idx",
                                             "url: /data/edge1/train.txt\n  format: txt"))
    pod = by_name(render(job), "Pod", "mnist-mistnet-edge1")
    assert [v["hostPath"]["path"] for v in pod["spec"]["volumes"]
            if "hostPath" in v and v["name"] != "fedmist-state"] == ["/data/edge1"]
    assert env_of(pod)["TRAIN_DATASET_URL"] == "/data/edge1/train.txt"


@pytest.mark.parametrize("cpu,threads", [("500m", "1"), ("1500m", "2"), ("2", "2"), (3, "3")])
def test_cpu_limit_sets_worker_threads(tmp_path: Path, cpu: object, threads: str) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(MNIST.read_text().replace("memory: 2Gi", f"memory: 2Gi\n                cpu: {cpu!r}"))
    pod = by_name(render(job), "Pod", "mnist-mistnet-cloud")
    assert env_of(pod)["FEDMIST_THREADS"] == env_of(pod)["OMP_NUM_THREADS"] == threads
    assert "FEDMIST_THREADS" not in env_of(by_name(render(job), "Pod", "mnist-mistnet-edge1"))
