from collections.abc import Callable
from pathlib import Path

import pytest

from fedmist.spec import ManifestError, ParamError, load_manifests, resolve_job
from fedmist.spec.naming import dns_label, unique_names

WriteJob = Callable[..., Path]

JOB = "FederatedLearningJob/mnist-mistnet"
AGG_ENV = "spec.aggregationWorker.template.spec.containers[0].env"

S3_SECRET = """---
apiVersion: v1
kind: Secret
metadata:
  name: s3cred
  annotations:
    s3-endpoint: minio.local:9000
    s3-usehttps: "0"
stringData:
  ACCESS_KEY_ID: akid
  SECRET_ACCESS_KEY: sk
"""


def resolve(path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    return resolve_job(load_manifests([path], kwargs.pop("path_map", None)), environ={}, **kwargs)  # type: ignore[arg-type]


def resolve_error(path: Path, **kwargs: object) -> str:
    with pytest.raises(ManifestError) as info:
        resolve(path, **kwargs)
    return str(info.value)


def test_missing_dataset_reference(write_job: WriteJob) -> None:
    path = write_job(replace=(("        name: edge1\n", "        name: edge3\n"),))
    assert resolve_error(path) == (f"{path}: {JOB}: spec.trainingWorkers[0].dataset.name: "
                                   "no Dataset named 'edge3' is defined (got 'edge3')")


def test_missing_model_and_secret_references(write_job: WriteJob) -> None:
    path = write_job(replace=(("  aggregationWorker:", "  pretrainedModel:\n    name: nope\n  aggregationWorker:"),))
    assert resolve_error(path) == f"{path}: {JOB}: spec.pretrainedModel.name: no Model named 'nope' is defined (got 'nope')"
    path = write_job(replace=(("  format: pth\n", "  format: pth\n  credentialName: gone\n"),))
    assert resolve_error(path) == f"{path}: Model/lenet: spec.credentialName: no Secret named 'gone' is defined (got 'gone')"


def test_two_jobs_without_a_name(write_job: WriteJob, job_yaml: str) -> None:
    second = job_yaml.split("---\n")[-1].replace("name: mnist-mistnet", "name: other")
    path = write_job(job_yaml + "---\n" + second)
    bundle = load_manifests([path])
    with pytest.raises(ManifestError) as info:
        resolve_job(bundle, environ={})
    assert str(info.value) == (f"{path}: 2 FederatedLearningJob documents are defined (mnist-mistnet, other); "
                               "name the one to run")
    assert resolve_job(bundle, "other", environ={}).name == "other"
    with pytest.raises(ManifestError, match=r": no FederatedLearningJob named 'x' is defined \(got 'x'\)$"):
        resolve_job(bundle, "x", environ={})


def test_bad_template_env_is_reported_at_resolve_time_with_full_path(write_job: WriteJob) -> None:
    path = write_job(replace=(('                  value: "2"\n    - dataset:',
                               '                  value: "2"\n                - name: epochs\n'
                               '                  value: "ten"\n    - dataset:'),))
    assert resolve_error(path) == (f"{path}: {JOB}: spec.trainingWorkers[0].template.spec.containers[0].env.epochs: "
                                   "must be an integer >= 1 (got 'ten')")
    path = write_job(replace=(('              - name: epsilon\n                value: "2"',
                               '              - name: epsilon\n                value: "-3"'),))
    with pytest.raises(ParamError) as info:
        resolve(path)
    assert str(info.value) == f"{path}: {JOB}: {AGG_ENV}.epsilon: must be a positive number or 'inf' (got '-3')"


def test_mistnet_without_epsilon(write_job: WriteJob) -> None:
    path = write_job(replace=(('              - name: epsilon\n                value: "2"\n', ""),))
    assert resolve_error(path) == (f"{path}: {JOB}: {AGG_ENV}.epsilon: required for aggregation_algorithm=mistnet; "
                                   "use epsilon: inf to disable noise explicitly")


def test_trainer_contradicting_aggregator(write_job: WriteJob) -> None:
    path = write_job(replace=(('                - name: epsilon\n', '                - name: CUT_LAYER\n'
                               '                  value: "4"\n                - name: epsilon\n'),))
    assert resolve_error(path) == (f"{path}: {JOB}: spec.trainingWorkers[0].template.spec.containers[0].env.CUT_LAYER: "
                                   "differs from the aggregationWorker's value 3 (got 4)")


def test_worker_names_are_unique_dns_labels(write_job: WriteJob) -> None:
    job = resolve(write_job())
    assert [w.name for w in job.workers] == ["cloud", "edge-1", "edge-2"]
    job = resolve(write_job(replace=(("        nodeName: cloud\n", ""),
                                     ("          nodeName: edge\n", "          nodeName: ${EDGE_X}\n"))))
    assert [w.name for w in job.workers] == ["aggregator", "edge-x", "edge"]
    assert job.trainers[0].node_name == "${EDGE_X}"
    expanded = resolve_job(load_manifests([write_job(replace=(("nodeName: edge\n", "nodeName: $EDGE_X\n"),))]),
                           environ={"EDGE_X": "Node_7"})
    assert expanded.trainers[0].node_name == "Node_7" and expanded.trainers[0].name == "node-7"
    assert unique_names(["a", "a", "a-1"]) == ["a-2", "a-3", "a-1"]
    assert dns_label("$EDGE1_NODE") == "edge1-node"


def test_s3_wins_over_ws(write_job: WriteJob, job_yaml: str) -> None:
    path = write_job(job_yaml + S3_SECRET, replace=(("  aggregationWorker:",
                     "  transmitter:\n    ws: {}\n    s3:\n      aggDataPath: s3://b/agg\n"
                     "      credentialName: s3cred\n  aggregationWorker:"),))
    job = resolve(path)
    assert (job.transmitter, job.agg_data_path) == ("s3", "s3://b/agg")
    assert job.s3 is not None and job.s3.endpoint_url == "http://minio.local:9000" and job.s3.use_https is False
    assert resolve(write_job()).transmitter == "ws"


def test_worker_env_for_trainer_and_aggregator(write_job: WriteJob, tmp_path: Path) -> None:
    path = write_job(replace=(('          containers:\n            - image: fedmist\n              env:\n',
                               '          containers:\n            - image: fedmist\n              env:\n'
                               '                - name: MODEL_URL\n                  value: /elsewhere\n'
                               '                - name: TEST_DATASET_URL\n                  value: test\n'
                               '                - name: my_knob\n                  value: 1\n'),
                              ("            env:\n", "            resources:\n              limits:\n"
                               "                memory: 512Mi\n            env:\n")))
    job = resolve(path, path_map={"/model": str(tmp_path / "m")})
    assert job.aggregator.memory_limit_bytes == 512 * 2**20 and job.trainers[0].memory_limit_bytes is None
    assert job.worker_env(job.trainers[0], "10.0.0.1", 7400) == {
        "JOB_NAME": "mnist-mistnet", "NAMESPACE": "default", "WORKER_NAME": "edge-1", "PARTICIPANTS_COUNT": "2",
        "TRANSMITTER": "ws", "MODEL_URL": str(tmp_path / "m" / "lenet5.pth"), "AGG_IP": "10.0.0.1",
        "AGG_PORT": "7400", "TRAIN_DATASET_URL": str(tmp_path / "data" / "edge1"), "DATASET_NAME": "edge1",
        "DATASET_FORMAT": "idx", "MODEL_NAME": "lenet", "epsilon": "2", "my_knob": "1",
        "TEST_DATASET_URL": str(tmp_path / "test"),
    }
    assert job.worker_env(job.aggregator, "10.0.0.1") == {
        "JOB_NAME": "mnist-mistnet", "NAMESPACE": "default", "WORKER_NAME": "cloud", "PARTICIPANTS_COUNT": "2",
        "TRANSMITTER": "ws", "MODEL_URL": str(tmp_path / "m" / "lenet5.pth"), "AGG_BIND_PORT": "7363",
        "aggregation_algorithm": "mistnet", "epsilon": "2", "cut_layer": "3", "epochs": "10",
    }


def test_user_participants_count_overrides_and_is_bounded(write_job: WriteJob) -> None:
    extra = '              - name: participants_count\n                value: "{n}"\n              - name: epochs\n'
    job = resolve(write_job(replace=(("              - name: epochs\n", extra.format(n=1)),)))
    env = job.worker_env(job.aggregator, "127.0.0.1")
    assert env["PARTICIPANTS_COUNT"] == "1" and "participants_count" not in env
    path = write_job(replace=(("              - name: epochs\n", extra.format(n=3)),))
    assert resolve_error(path) == (f"{path}: {JOB}: {AGG_ENV}.participants_count: must not exceed the number of "
                                   "trainingWorkers (2) (got 3)")
